"""Shared machinery of the evasion attacks.

:class:`BaseAttack` owns everything the individual attacks have in common:
turning the ``target`` (torch module, fitted skorch net, or any estimator
implementing ``attack_surface()``) into one differentiable function
(:class:`~skadv.utils.AttackSurface`), checking and converting inputs,
batching, averaging gradients over random draws (EOT), the objectives,
progress and the per-iteration trace. A concrete attack only implements
:meth:`BaseAttack._perturb`, which works on one batch of float32 tensors
with the batch's run state (``_run.Run``: labels, per-row random streams
from ``_rng``, clip box) and the norm-ball helpers of ``_geometry``.
"""

import sys
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import Bunch, check_random_state
from tqdm import tqdm

from .._core import Interval, values_outside
from ..utils import resolve_attack_surface
from ._rng import row_keys
from ._run import Run

__all__ = ["BaseAttack"]

# Seconds between two redraws of a progress bar.
_PROGRESS_INTERVAL = 0.5


def progress_bar(*, verbose, desc, unit="it", total=None):
    """A tqdm bar on stderr, shown only when ``verbose`` (drawn at most every 0.5 s).

    A bar nested in another one (a member of an ensemble) is removed when done.
    """
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=not verbose,
        file=sys.stderr,
        mininterval=_PROGRESS_INTERVAL,
        leave=None,
        dynamic_ncols=True,
    )


def _resolve_target(target, X, *, adaptive, device, input_shape):
    """The :class:`~skadv.utils.AttackSurface` an attack optimises against.

    The target's full surface when ``adaptive``, else its classifier alone.
    """
    surface = resolve_attack_surface(target, X, input_shape=input_shape, device=device)
    return surface if adaptive else surface.classifier_only()


class BaseAttack(BaseEstimator):
    """Base class of skadv's evasion attacks.

    Not meant to be instantiated: use :class:`FGSM`, :class:`PGD`,
    :class:`APGD`, :class:`Square`, :class:`AutoAttack`, ... The base owns
    everything the attacks share; :meth:`run` validates the parameters,
    resolves the ``target`` to its :class:`~skadv.utils.AttackSurface` (the
    estimator's ``attack_surface()``, or a frozen copy of a torch module or
    skorch net), converts ``X`` to float32 tensors
    of ``input_shape``, resolves the labels, and calls the subclass's
    ``_perturb(run, x0)`` batch by batch, where ``run`` (a per-batch
    ``Run``) holds the target, the labels, per-row random streams, the clip
    box and the trace. Subclasses use :meth:`_value_and_grad`
    (EOT-averaged gradients), ``run.clip`` / ``run.clip_and_project``, the
    objectives :meth:`_xent_objective` / :meth:`_margin_objective`
    (adaptive-aware) and :meth:`_trace_step`.

    Attacks keep no per-call state on the instance: :meth:`run` returns its
    results, so one instance may be used from several threads at once and
    gives exactly what a fresh copy would. :meth:`generate` also stores the
    last call's ``n_iter_`` (and ``trace_``) for convenience; with
    concurrent calls read them from :meth:`run`'s result instead.

    Attacks are :class:`~sklearn.base.BaseEstimator` subclasses only for
    ``get_params`` / ``set_params``, parameter validation and ``repr``; they
    have no ``fit``. Parameters shared by every attack are documented on the
    subclasses.

    Tools that judge an attack's output as the attack itself does (such as
    :func:`check_attack_failure`) use :meth:`resolve_target`,
    :meth:`label_indices`, :meth:`mean_scores` and :meth:`success`;
    :meth:`check_input_range` validates inputs against ``clip_values``.
    """

    _parameter_constraints: dict = {
        "target": "no_validation",
        "targeted": ["boolean"],
        "adaptive": ["boolean"],
        "clip_values": [tuple, list, None],
        "input_shape": [tuple, list, None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device, None],
        "eot_samples": [Interval(Integral, 1, None, closed="left")],
        "trace": ["boolean"],
        "verbose": ["verbose"],
    }

    #: Whether ``run(..., x_init=...)`` is supported (the attack starts from given points).
    _accepts_x_init = False

    def __init__(
        self,
        target,
        *,
        targeted=False,
        adaptive=True,
        clip_values=(0.0, 1.0),
        input_shape=None,
        batch_size=256,
        device=None,
        eot_samples=8,
        trace=False,
        verbose=0,
    ):
        self.target = target
        self.targeted = targeted
        self.adaptive = adaptive
        self.clip_values = clip_values
        self.input_shape = input_shape
        self.batch_size = batch_size
        self.device = device
        self.eot_samples = eot_samples
        self.trace = trace
        self.verbose = verbose

    # ------------------------------------------------------------------ API
    def generate(self, X, y=None, *, x_init=None, **unsupported):
        """Craft adversarial examples for ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Clean inputs. Rows are reshaped to ``input_shape`` (or to the
            target estimator's ``input_shape``) before reaching the model.
        y : array-like of shape (n_samples,), default=None
            True labels (untargeted attack) or target labels (``targeted=True``).
            When None, the model's own predictions on ``X`` are used as true
            labels; a targeted attack requires ``y``.
        x_init : array-like of the shape of X, default=None
            Starting points, e.g. the output of a non-adaptive attack (only
            attacks that start from a point accept it: :class:`PGD`,
            :class:`APGD`, :class:`Square` with ``norm=inf``,
            :class:`AutoAttack`). They are clipped to the box and projected
            onto the attack's ball around ``X``.
        **unsupported
            Refused with a ValueError naming the keyword: other libraries'
            options (e.g. ART's ``mask``) have no equivalent here.

        Returns
        -------
        X_adv : ndarray of the same shape as X
            Adversarial examples, float (X's float dtype, else float32).
        """
        if unsupported:
            raise ValueError(
                f"{type(self).__name__}.generate got unsupported keyword(s) {sorted(unsupported)}. skadv's attacks "
                "perturb every feature and take only X, y and x_init (there is no mask: to keep features fixed, "
                "perturb a copy and restore those columns, or give per-feature clip_values bounds)."
            )
        result = self.run(X, y, x_init=x_init)
        # Results of the last call, for convenience (each is one assignment, so
        # concurrent calls never see a half-written value; run() is exact).
        self.n_iter_ = result.n_iter
        if self.trace:
            self.trace_ = result.trace
        return result.X_adv

    def run(self, X, y=None, *, x_init=None):
        """Craft adversarial examples and return them with per-call results.

        Same parameters as :meth:`generate`; nothing is stored on the attack.

        Returns
        -------
        result : :class:`~sklearn.utils.Bunch`
            - ``X_adv``: the adversarial examples (as :meth:`generate`);
            - ``success``: bool array ``(n_samples,)``, whether each example
              succeeds by the attack's own criterion (misclassified and, in an
              adaptive attack, not flagged; classified as the target when
              targeted), evaluated on the final point;
            - ``n_iter``: int, see ``n_iter_``;
            - ``loss_range``: float array ``(n_samples,)``, the largest range of
              the attack's loss over the iterations of one restart. Zero for a
              row whose loss never moved: a sign of vanishing or masked
              gradients (:func:`check_attack_failure` reports such rows);
            - ``trace``: the per-iteration trace (see ``trace_``) when
              ``trace=True``, else None.
        """
        X, x_init, target, y_idx = self._prepare(X, y, x_init)
        out_dtype = X.dtype if np.issubdtype(X.dtype, np.floating) else np.float32

        # Only attacks with a random_state draw a seed (the others must not
        # advance numpy's global RNG behind the user's back).
        seed = 0
        if hasattr(self, "random_state"):
            seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        lo, hi = self._clip_tensors(target)

        adversarials, traces, success, loss_range, n_iter = [], [], [], [], 0
        n_batches = -(-X.shape[0] // self.batch_size)
        with progress_bar(verbose=self.verbose, desc=self._progress_desc(X.shape[0]), unit=" steps") as bar:
            for batch, start in enumerate(range(0, X.shape[0], self.batch_size)):
                bar.set_postfix_str(f"batch {batch + 1}/{n_batches}", refresh=False)
                rows = slice(start, start + self.batch_size)
                x0 = target.to_tensor(X[rows])
                yb = torch.as_tensor(y_idx[rows], device=target.device)
                record = [] if self.trace else None
                run = Run(target, yb, row_keys(x0, seed), lo, hi, record=record, progress=bar if self.verbose else None)
                if x_init is not None:
                    run.x_init = run.clip(target.to_tensor(x_init[rows]))
                x_adv = self._perturb(run, x0).detach()
                with torch.no_grad():
                    success.append(self._is_success(target, self._forward_mean(target, x_adv), yb).cpu().numpy())
                adversarials.append(x_adv.cpu().numpy())
                loss_range.append(run.loss_range())
                n_iter = max(n_iter, run.n_iter)
                if self.trace:
                    traces.append(run.record)
        X_adv = np.concatenate(adversarials).reshape(X.shape).astype(out_dtype, copy=False)
        return Bunch(
            X_adv=X_adv,
            success=np.concatenate(success),
            n_iter=int(n_iter),
            loss_range=np.concatenate(loss_range),
            trace=self._stack_trace(traces, target.outputs_are_logits) if self.trace else None,
        )

    # ------------------------------------------------------- for subclasses
    def _check_attack_params(self):
        """Cross-parameter checks of a subclass (raise ValueError)."""

    def _perturb(self, run, x0):  # pragma: no cover - abstract
        """Attack one batch ``x0`` (labels ``run.y``); return the adversarial batch.

        Set ``run.n_iter`` to the iterations run; call :meth:`_trace_step`
        once per iteration with the loss.
        """
        raise NotImplementedError

    def _prepare(self, X, y, x_init=None):
        """Validate the parameters and inputs of a call; return ``(X, x_init, target, y_idx)``."""
        self._validate_params()
        self._check_attack_params()
        X = np.asarray(X)
        if X.ndim < 2:
            raise ValueError(f"X must have at least 2 dimensions; got shape {X.shape}.")
        if X.shape[0] == 0:
            raise ValueError("X has 0 samples; at least 1 is required.")
        if x_init is not None:
            if not self._accepts_x_init:
                raise ValueError(f"{type(self).__name__} does not start from given points; pass x_init=None.")
            x_init = np.asarray(x_init)
            if x_init.shape != X.shape:
                raise ValueError(f"x_init must have the shape of X {X.shape}; got {x_init.shape}.")
        target = self.resolve_target(X)
        self.check_input_range(X, target=target)
        return X, x_init, target, self.label_indices(target, X, y)

    def _progress_desc(self, n_rows, name=None):
        """What a progress bar says: the attack, the rows and the budget."""
        eps = getattr(self, "eps", None)
        budget = "" if eps is None else f" (ε={eps:g})"
        return f"{name or type(self).__name__} on {n_rows} rows{budget}"

    # -------------------------------------------------- for judging tools
    def resolve_target(self, X):
        """The :class:`~skadv.utils.AttackSurface` this attack optimises against.

        The target's full surface (classifier and detector) when the attack
        is ``adaptive``, else its classifier alone.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Inputs of the call (they fix the input shape of a plain module).

        Returns
        -------
        surface : :class:`~skadv.utils.AttackSurface`
        """
        return _resolve_target(
            self.target,
            X,
            adaptive=self.adaptive,
            device=self.device,
            input_shape=None if self.input_shape is None else tuple(self.input_shape),
        )

    def check_input_range(self, X, *, target=None):
        """Raise a ValueError when ``X`` lies outside ``clip_values``.

        Every adversarial example is clipped to ``clip_values``; an input
        outside that box would be moved into it, far beyond the budget
        ``eps`` (raw 0-255 pixels with the default ``(0, 1)`` box). The
        attacks call this once per call; ``clip_values=None`` checks nothing.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Clean inputs.
        target : :class:`~skadv.utils.AttackSurface`, default=None
            The resolved target (from :meth:`resolve_target`); only needed,
            and resolved when None, for array-valued bounds, which broadcast
            against one input of the target's ``input_shape``.

        Raises
        ------
        ValueError
            Naming the observed range of ``X`` and the fix.
        """
        if self.clip_values is None:
            return
        lo, hi = self._clip_bounds()
        X = np.asarray(X)
        rows = X
        if lo.ndim or hi.ndim:
            if target is None:
                target = self.resolve_target(X)
            shape = X.shape[1:] if target.input_shape is None else tuple(target.input_shape)
            rows = X.reshape(X.shape[0], *shape)
        observed = values_outside(rows, lo, hi)
        if observed is None:
            return
        box = tuple(self.clip_values) if lo.ndim == 0 and hi.ndim == 0 else "(array bounds)"
        raise ValueError(
            f"X has values in {observed}, outside clip_values={box}, the box {type(self).__name__} clips its "
            "adversarial examples to: they would land far outside the eps-ball. Pass clip_values=(lo, hi) "
            "matching the range of valid inputs of your data (e.g. clip_values=(0, 255) for 8-bit pixels, "
            "(X.min(), X.max()) for standardized features), or clip_values=None for no box."
        )

    def label_indices(self, target, X, y=None):
        """Column indices of the labels the attack moves away from (or towards, when targeted).

        Parameters
        ----------
        target : :class:`~skadv.utils.AttackSurface`
            From :meth:`resolve_target`.
        X : array-like of shape (n_samples, ...)
            Clean inputs.
        y : array-like of shape (n_samples,), default=None
            True labels (target labels when ``targeted``); None uses the
            target's predictions on ``X``.

        Returns
        -------
        y_idx : ndarray of int of shape (n_samples,)
        """
        if self.targeted and y is None:
            raise ValueError("A targeted attack needs the target labels y.")
        if y is None:
            return target.scores(X, batch_size=self.batch_size)[:, : target.n_classes].argmax(axis=1)
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(
                f"y must hold one class label per row, shape ({X.shape[0]},); got shape {y.shape}. "
                "For one-hot labels (ART's convention) pass y.argmax(axis=1)."
            )
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X and y have inconsistent numbers of samples: {X.shape[0]} and {y.shape[0]}.")
        return target.labels_to_indices(y)

    def mean_scores(self, target, X):
        """The target's scores of ``X`` in batches, averaged over ``eot_samples`` draws when randomized.

        Parameters
        ----------
        target : :class:`~skadv.utils.AttackSurface`
            From :meth:`resolve_target`.
        X : array-like of shape (n_samples, ...)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_outputs)
            The classes' scores, and the "rejected" score last when the
            target has a detector.
        """
        return self._mean_scores(target, X).cpu().numpy()

    def success(self, target, X_adv, y_idx):
        """Whether each row of ``X_adv`` succeeds by this attack's criterion.

        Misclassified (and, against a detector, not flagged) when
        untargeted; classified as the target when ``targeted``. Judged on
        :meth:`mean_scores`.

        Parameters
        ----------
        target : :class:`~skadv.utils.AttackSurface`
            From :meth:`resolve_target`.
        X_adv : array-like of shape (n_samples, ...)
            Attacked inputs.
        y_idx : array-like of int of shape (n_samples,)
            From :meth:`label_indices`.

        Returns
        -------
        success : ndarray of bool of shape (n_samples,)
        """
        scores = self._mean_scores(target, X_adv)
        return self._is_success(target, scores, torch.as_tensor(y_idx, device=scores.device)).cpu().numpy()

    def _mean_scores(self, target, X):
        out = []
        with torch.no_grad():
            for start in range(0, len(X), self.batch_size):
                out.append(self._forward_mean(target, target.to_tensor(X[start : start + self.batch_size])))
        return torch.cat(out)

    def _clip_bounds(self):
        """``clip_values`` as validated float32 arrays ``(lo, hi)``."""
        if len(self.clip_values) != 2:
            raise ValueError(f"clip_values must be (min, max) or None; got {self.clip_values!r}.")
        lo = np.asarray(self.clip_values[0], dtype=np.float32)
        hi = np.asarray(self.clip_values[1], dtype=np.float32)
        if np.any(lo >= hi):
            raise ValueError(f"clip_values must satisfy min < max; got {self.clip_values!r}.")
        return lo, hi

    def _clip_tensors(self, target):
        if self.clip_values is None:
            return None, None
        lo, hi = self._clip_bounds()
        return torch.as_tensor(lo, device=target.device), torch.as_tensor(hi, device=target.device)

    def _eot_draws(self, target):
        return self.eot_samples if target.stochastic else 1

    def _forward_mean(self, target, x):
        """Forward pass, averaged over EOT draws when the target is randomized."""
        draws = self._eot_draws(target)
        out = target.forward(x)
        for _ in range(draws - 1):
            out = out + target.forward(x)
        return out / draws if draws > 1 else out

    def _value_and_grad(self, target, x, objective):
        """Per-sample ``objective(logits)`` and its input gradient.

        With a randomized target the objective (not the logits) is averaged
        over ``eot_samples`` draws with fresh noise each, which averages the
        gradients (EOT). Returns ``(value, grad, logits)`` with value and
        logits detached.
        """
        x = x.detach().requires_grad_(True)
        draws = self._eot_draws(target)
        total, logits_sum = 0.0, 0.0
        for _ in range(draws):
            logits = target.forward(x)
            total = total + objective(logits)
            logits_sum = logits_sum + logits.detach()
        value = total / draws
        (grad,) = torch.autograd.grad(value.sum(), x)
        return value.detach(), grad, logits_sum / draws

    # --------------------------------------------------------- objectives
    def _xent_objective(self, target, y):
        """Per-sample loss to *maximise* for the gradient attacks.

        Untargeted: cross-entropy of the true class. Against a skadv
        estimator the "bad" outcomes are the true class *and* the rejected
        column, so the loss is ``-log(p_true + p_rejected)``: maximising it
        moves the input to a wrong class that is also not flagged.
        Targeted: log-probability of the target class.
        """
        reject = target.reject_index

        def objective(logits):
            log_p = torch.log_softmax(logits, dim=1)
            log_py = log_p.gather(1, y[:, None])[:, 0]
            if self.targeted:
                return log_py
            if reject is None:
                return -log_py
            return -torch.logaddexp(log_py, log_p[:, reject])

        return objective

    def _margin_objective(self, target, y):
        """Per-sample margin to *minimise*; negative means success.

        Untargeted: ``max(bad scores) - max(other scores)`` where the bad
        scores are the true class and, against a skadv estimator, the
        rejected column. While a point is rejected the reject score is the
        largest bad score, so the objective is the reject score (secml's
        reject-aware objective for DNR). Targeted: ``max_{j != t} z_j - z_t``.
        """
        reject = target.reject_index

        def objective(logits):
            z_y = logits.gather(1, y[:, None])[:, 0]
            others = logits.scatter(1, y[:, None], float("-inf"))
            if self.targeted:
                return others.amax(dim=1) - z_y
            bad = z_y
            if reject is not None:
                bad = torch.maximum(z_y, logits[:, reject])
                others = others.clone()
                others[:, reject] = float("-inf")
            return bad - others.amax(dim=1)

        return objective

    def _is_success(self, target, logits, y):
        pred = logits.argmax(dim=1)
        if self.targeted:
            return pred == y
        ok = pred != y
        if target.reject_index is not None:
            ok &= pred != target.reject_index
        return ok

    @staticmethod
    def _true_other_reject(values, target, y, fill):
        """Column ``y``, the largest other class column and the reject column (NaN if none)."""
        true = values.gather(1, y[:, None])[:, 0]
        others = values.scatter(1, y[:, None], fill)
        if target.reject_index is None:
            return true, others.amax(dim=1), torch.full_like(true, float("nan"))
        reject = values[:, target.reject_index]
        others[:, target.reject_index] = fill
        return true, others.amax(dim=1), reject

    def _trace_step(self, run, logits, loss):
        """Observe one iteration's per-sample loss; when tracing, record its statistics.

        Both the softmax confidences and the raw scores (the target's outputs
        as they are) are recorded: for raw decision scores, such as DNR's,
        the softmax is near-uniform and only the scores show the attack's
        progress.
        """
        run.observe_loss(loss)
        run.tick()
        if run.record is None:
            return
        target, y = run.target, run.y
        with torch.no_grad():
            proba = torch.softmax(logits, dim=1)
            p_y, p_other, p_reject = self._true_other_reject(proba, target, y, 0.0)
            z_y, z_other, z_reject = self._true_other_reject(logits, target, y, float("-inf"))
            run.record.append(
                {
                    "loss": loss.detach(),
                    "true_confidence": p_y,
                    "max_other_confidence": p_other,
                    "reject_confidence": p_reject,
                    "true_score": z_y,
                    "max_other_score": z_other,
                    "reject_score": z_reject,
                    "success": self._is_success(target, logits, y).to(p_y.dtype),
                }
            )

    @staticmethod
    def _stack_trace(traces, scores_are_logits=True):
        """Per-iteration arrays ``(n_iter, n_samples)``; short batches padded with their last value."""
        n_iter = max(len(rec) for rec in traces)
        keys = [
            "loss",
            "true_confidence",
            "max_other_confidence",
            "reject_confidence",
            "true_score",
            "max_other_score",
            "reject_score",
            "success",
        ]
        out = {}
        for key in keys:
            columns = []
            for rec in traces:
                arr = torch.stack([step[key] for step in rec]).cpu().numpy().astype(np.float64)
                if arr.shape[0] < n_iter:
                    pad = np.repeat(arr[-1:], n_iter - arr.shape[0], axis=0)
                    arr = np.concatenate([arr, pad])
                columns.append(arr)
            out[key] = np.concatenate(columns, axis=1)
        out["success"] = out["success"].astype(bool)
        return Bunch(n_iter=n_iter, scores_are_logits=bool(scores_are_logits), **out)
