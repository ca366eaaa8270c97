"""Shared machinery of the evasion attacks.

:class:`BaseAttack` owns everything the individual attacks have in common:
turning the ``target`` (torch module, fitted skorch net, or any estimator
implementing ``attack_surface()``) into one differentiable function
(:class:`~skadv.utils.AttackSurface`), converting inputs, batching,
clipping to the valid box, projecting onto the perturbation ball, averaging
gradients over random draws (EOT) and recording the per-iteration trace.
A concrete attack only implements :meth:`BaseAttack._perturb`, which works
on one batch of float32 tensors.
"""

from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import Bunch, check_random_state

from .._core import Interval
from ..utils import resolve_attack_surface

__all__ = ["BaseAttack"]

def _resolve_target(target, X, *, adaptive, device, input_shape):
    """The :class:`~skadv.utils.AttackSurface` an attack optimises against.

    The target's full surface when ``adaptive``, else its classifier alone.
    """
    surface = resolve_attack_surface(target, X, input_shape=input_shape, device=device)
    return surface if adaptive else surface.classifier_only()


def _per_sample_norm(t, norm):
    flat = t.reshape(t.shape[0], -1)
    if norm == np.inf:
        return flat.abs().amax(dim=1)
    return flat.norm(p=2, dim=1)


def _view_per_sample(v, like):
    """Reshape a ``(n,)`` tensor so it broadcasts against ``like`` ``(n, ...)``."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def _normalize_l2(g):
    """Unit-L2 direction per sample (zero where the gradient is zero)."""
    norms = _per_sample_norm(g, 2)
    return g / _view_per_sample(torch.where(norms > 0, norms, torch.ones_like(norms)), g)


def _project(delta, eps, norm):
    """Project perturbations onto the ``norm`` ball of radius ``eps``."""
    if norm == np.inf:
        return delta.clamp(-eps, eps)
    norms = _per_sample_norm(delta, 2)
    factor = torch.where(norms > eps, eps / norms.clamp_min(1e-30), torch.ones_like(norms))
    return delta * _view_per_sample(factor, delta)


def _normalize_norm(norm):
    if isinstance(norm, str):
        return np.inf
    return np.inf if np.isinf(norm) else 2


def _as_int64(value):
    """A 64-bit constant as the signed value torch's int64 arithmetic (wrapping) uses."""
    return value - (1 << 64) if value >= (1 << 63) else value


_MIX1 = _as_int64(0xBF58476D1CE4E5B9)
_MIX2 = _as_int64(0x94D049BB133111EB)
_GOLDEN = _as_int64(0x9E3779B97F4A7C15)


def _shift_right(z, k):
    """Logical right shift of int64 tensors (torch's ``>>`` is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix64(z):
    """splitmix64's finaliser: a bijective scrambling of int64 tensors."""
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    return z ^ _shift_right(z, 31)


def _row_keys(x0, seed):
    """One int64 key per row from the row's values and the call's seed."""
    bits = x0.detach().to("cpu", torch.float32).contiguous().view(torch.int32).to(torch.int64).flatten(1)
    position = torch.arange(bits.shape[1], dtype=torch.int64)
    key = _mix64(bits ^ _mix64(position * _GOLDEN + 1)).sum(dim=1)
    return _mix64(key ^ _mix64(torch.tensor(int(seed), dtype=torch.int64)))


class _Run:
    """Run-state of one batch of one :meth:`BaseAttack.run` call.

    Everything an attack changes while it works lives here, never on the
    attack instance, so one instance can serve concurrent calls (threads)
    and give each the same result as a fresh copy would.

    Attributes
    ----------
    target : skadv.utils.AttackSurface
        The resolved target (the full surface, or its classifier alone when
        the attack is not adaptive).
    y : torch.Tensor
        Label indices of the batch (true labels, or targets when targeted).
    keys : torch.Tensor
        One random key per row (from the row's values and the call's seed):
        the random draws of a row depend on its key and on how many draws
        came before, never on the other rows of the batch, so an input gets
        the same result whatever it is batched with (an ensemble running a
        member on the inputs still unbroken gets, per input, what the member
        alone would).
    lo, hi : torch.Tensor or None
        The clip box.
    x_init : torch.Tensor or None
        Starting points of the batch (``run(..., x_init=...)``), already
        inside the clip box; the attack projects them onto its ball.
    record : list or None
        Per-iteration statistics when tracing (one dict per iteration).
    n_iter : int
        Iterations run on this batch (see :attr:`BaseAttack.n_iter_`).
    """

    def __init__(self, target, y, keys, lo, hi, x_init=None, record=None):
        self.target = target
        self.y = y
        self.keys = keys
        self._n_draws = 0
        self.lo = lo
        self.hi = hi
        self.x_init = x_init
        self.record = record
        self.n_iter = 0
        # Per-row range of the observed loss, per restart (stalled-loss check).
        self._loss_lo = self._loss_hi = None
        self._loss_range = torch.zeros(y.shape[0], dtype=torch.float64)

    def uniform(self, shape, device):
        """Uniform float32 draws in [0, 1) of ``shape`` (``shape[0]`` = rows), per-row streams."""
        self._n_draws += 1
        per_row = int(np.prod(shape[1:], dtype=np.int64))
        counter = _mix64(torch.tensor(self._n_draws, dtype=torch.int64) * _GOLDEN)
        z = _mix64(self.keys[:, None] ^ _mix64(torch.arange(per_row, dtype=torch.int64)[None] + counter))
        u = _shift_right(z, 11).to(torch.float64) * 2.0**-53
        return u.to(torch.float32).reshape(shape).to(device)

    def normal(self, shape, device):
        """Standard normal float32 draws (Box-Muller on two uniform draws)."""
        u1, u2 = self.uniform(shape, device), self.uniform(shape, device)
        return torch.sqrt(-2 * torch.log1p(-u1)) * torch.cos(2 * np.pi * u2)

    def clip(self, x):
        if self.lo is None:
            return x
        return torch.maximum(torch.minimum(x, self.hi), self.lo)

    def clip_and_project(self, x, x0, eps, norm):
        """Bring ``x`` back into the clip box and the ``norm`` ball of radius ``eps`` around ``x0``.

        Clip first, then project: projecting moves the point towards ``x0``
        (along a segment for L2), which stays inside the box whenever ``x0``
        is, so the result satisfies both constraints. The final clip only
        matters for inputs that start outside the box.
        """
        x = self.clip(x)
        return self.clip(x0 + _project(x - x0, eps, norm))

    def observe_loss(self, loss):
        """Record one per-row loss value of the current restart."""
        loss = loss.detach().to("cpu", torch.float64)
        if self._loss_lo is None:
            self._loss_lo, self._loss_hi = loss.clone(), loss.clone()
        else:
            self._loss_lo = torch.minimum(self._loss_lo, loss)
            self._loss_hi = torch.maximum(self._loss_hi, loss)

    def new_restart(self):
        """Close the loss range of a restart (a fresh start is no progress)."""
        if self._loss_lo is not None:
            self._loss_range = torch.maximum(self._loss_range, self._loss_hi - self._loss_lo)
        self._loss_lo = self._loss_hi = None

    def subset(self, rows):
        """A run over the batch rows ``rows`` (a restart on the rows not yet broken).

        It continues the rows' random streams and shares the clip box; its
        loss observations and draws are merged back with :meth:`merge`. It
        does not trace.
        """
        x_init = None if self.x_init is None else self.x_init[rows]
        child = _Run(self.target, self.y[rows], self.keys[rows.cpu()], self.lo, self.hi, x_init=x_init)
        child._n_draws = self._n_draws
        return child

    def merge(self, child, rows):
        """Fold the loss range of ``child`` (a :meth:`subset` over ``rows``) into this run."""
        rows = rows.cpu()
        self._n_draws = max(self._n_draws, child._n_draws)
        self._loss_range[rows] = torch.maximum(self._loss_range[rows], torch.as_tensor(child.loss_range()))

    def loss_range(self):
        """Largest per-row loss range over the restarts, ``(n,)`` float64."""
        self.new_restart()
        return self._loss_range.numpy()


class BaseAttack(BaseEstimator):
    """Base class of skadv's evasion attacks.

    Not meant to be instantiated: use :class:`FGSM`, :class:`PGD`,
    :class:`APGD`, :class:`Square`, :class:`AutoAttack`, ... The base owns
    everything the attacks share; :meth:`run` validates the parameters,
    resolves the ``target`` to its :class:`~skadv.utils.AttackSurface` (the
    estimator's ``attack_surface()``, or a frozen copy of a torch module or
    skorch net), converts ``X`` to float32 tensors
    of ``input_shape``, resolves the labels, and calls the subclass's
    ``_perturb(run, x0)`` batch by batch, where ``run`` (a per-call
    ``_Run``) holds the target, the labels, per-row random streams, the clip
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

    # ------------------------------------------------------------------ API
    def generate(self, X, y=None, *, x_init=None):
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

        Returns
        -------
        X_adv : ndarray of the same shape as X
            Adversarial examples, float (X's float dtype, else float32).
        """
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
        out_dtype = X.dtype if np.issubdtype(X.dtype, np.floating) else np.float32
        target = self._resolve(X)
        y_idx = self._label_indices(target, X, y)

        # Only attacks with a random_state draw a seed (the others must not
        # advance numpy's global RNG behind the user's back).
        seed = 0
        if hasattr(self, "random_state"):
            seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        lo, hi = self._clip_tensors(target)

        adversarials, traces, success, loss_range, n_iter = [], [], [], [], 0
        for start in range(0, X.shape[0], self.batch_size):
            rows = slice(start, start + self.batch_size)
            x0 = target.to_tensor(X[rows])
            yb = torch.as_tensor(y_idx[rows], device=target.device)
            run = _Run(target, yb, _row_keys(x0, seed), lo, hi, record=[] if self.trace else None)
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

    def _resolve(self, X):
        return _resolve_target(
            self.target,
            X,
            adaptive=self.adaptive,
            device=self.device,
            input_shape=None if self.input_shape is None else tuple(self.input_shape),
        )

    def _label_indices(self, target, X, y):
        if self.targeted and y is None:
            raise ValueError("A targeted attack needs the target labels y.")
        if y is None:
            return target.scores(X, batch_size=self.batch_size)[:, : target.n_classes].argmax(axis=1)
        y = np.asarray(y)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X and y have inconsistent numbers of samples: {X.shape[0]} and {y.shape[0]}.")
        return target.labels_to_indices(y)

    def _clip_tensors(self, target):
        if self.clip_values is None:
            return None, None
        if len(self.clip_values) != 2:
            raise ValueError(f"clip_values must be (min, max) or None; got {self.clip_values!r}.")
        lo = torch.as_tensor(np.asarray(self.clip_values[0], dtype=np.float32), device=target.device)
        hi = torch.as_tensor(np.asarray(self.clip_values[1], dtype=np.float32), device=target.device)
        if torch.any(lo >= hi):
            raise ValueError(f"clip_values must satisfy min < max; got {self.clip_values!r}.")
        return lo, hi

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
