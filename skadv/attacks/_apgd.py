"""Auto-PGD (Croce & Hein, 2020): PGD with a budget-aware step-size schedule."""

import dataclasses
import math
from numbers import Integral, Real

import numpy as np
import torch

from .._core import Interval, StrOptions
from ._base import BaseAttack
from ._docs import fill_doc
from ._geometry import NORM_CONSTRAINT, ascent_direction, normalize_norm, start_point, view_per_sample

__all__ = ["APGD"]

# Keeps the DLR ratio finite when the sorted scores tie.
_DLR_TINY = 1e-12


def _checkpoints(max_iter):
    """Iterations after which APGD may halve its step: ``ceil(p_j * max_iter)``.

    ``p_0 = 0``, ``p_1 = 0.22`` and ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``
    while ``p_j <= 1`` (Croce & Hein 2020, section 3.2).
    """
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1:
        # Rounded so that float noise (0.41 + 0.16 = 0.5700000000000001) cannot move a ceil.
        p.append(round(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06), 9))
    return sorted({math.ceil(round(pj * max_iter, 6)) for pj in p})


@fill_doc
class APGD(BaseAttack):
    """Auto-PGD (Croce & Hein, 2020), L-inf or L2, with CE, DLR or margin loss.

    PGD with momentum whose step size needs no tuning: it starts at
    ``step_size`` (default ``2 * eps``) and is halved, per input, at the
    checkpoints ``w_j = ceil(p_j * max_iter)`` (``p_0 = 0``, ``p_1 = 0.22``,
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``) when either the loss
    increased in fewer than ``rho`` of the steps since the last checkpoint, or
    the step was not halved at the last checkpoint and the best loss has not
    improved since; a halving restarts from the best point found. Each step
    is ``z = P(x_k + eta * dir(grad))``,
    ``x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1}))`` with
    ``a = momentum`` (1 on the first step), where ``dir`` is the sign (L-inf)
    or the unit-L2 gradient and ``P`` projects onto the eps-ball and the box.
    ``n_restarts`` restarts from random points of the ball on the inputs not
    yet broken; each input gets its successful iterate of highest loss (or,
    when none succeeds, its point of highest loss).

    Losses (maximised): ``"ce"``, the cross-entropy of the true class
    (against a skadv estimator ``-log(p_true + p_rejected)``, as in
    :class:`PGD`); ``"dlr"``, the difference-of-logits ratio
    ``-(z_bad - max_other z) / (z_(1) - z_(3))`` over the sorted scores
    ``z_(1) >= z_(2) >= ...``, invariant to shifting and scaling the scores
    (``z_bad`` is the true class, or the larger of the true class and the
    "rejected" score in an adaptive attack; targeted:
    ``-(max_{j != t} z_j - z_t) / (z_(1) - (z_(3) + z_(4)) / 2)``); ``"margin"``,
    ``-(z_bad - max_other z)`` (Carlini & Wagner's margin on the K+1 scores
    of an adaptive attack; it keeps a useful gradient where the softmax of
    raw decision scores, such as DNR's, is flat); ``"escape"``, the largest
    escape score of a wrong class (targeted: the target's), from the
    target's :attr:`~skadv.utils.AttackSurface.escape`: it leaves a flat
    reject region, where the other losses have no usable gradient, towards
    an accepted wrong class (success is still judged on the target's
    scores, taken from the same pass when the surface provides
    :attr:`~skadv.utils.AttackSurface.forward_with_escape`). It needs an adaptive attack on an estimator whose attack
    surface provides escape scores (such as a thresholded
    :class:`~skadv.DeepNeuralRejection`).

    Parameters
    ----------
    target : torch.nn.Module, fitted skorch NeuralNet or fitted estimator with ``attack_surface()``
        Model to attack; see :class:`FGSM`.

    eps : float, default=0.3
        Radius of the perturbation ball.

    norm : {np.inf, 2, "inf"}, default=np.inf
        Norm of the perturbation ball.

    loss : {"ce", "dlr", "margin", "escape"}, default="ce"
        Loss to maximise (see above).

    max_iter : int, default=100
        Iterations per restart.

    n_restarts : int, default=1
        Number of runs; every run after the first starts from a random point
        and attacks only the inputs not yet broken.

    step_size : float or None, default=None
        Initial step size; None means ``2 * eps``.

    rho : float, default=0.75
        Share of increasing steps below which the step size is halved.

    momentum : float, default=0.75
        Weight ``a`` of the new step against the previous one.

    random_start : bool, default=True
        Start the first run from a uniform point of the ball (later runs
        always do). With ``x_init`` passed to :meth:`generate`, the first run
        starts there instead.

    random_state : int, RandomState instance or None, default=None
        Seeds the random starts. Pass an int for reproducible output.

%(common_params)s

    Attributes
    ----------
%(trace_attribute)s
        The trace covers the first run; row 0 is the starting point.

    See Also
    --------
    PGD : Fixed-step PGD.
    AutoAttack : Per-input worst case over APGD, Square and detector-aware attacks.

    References
    ----------
    F. Croce, M. Hein. "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks", ICML 2020.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from skadv.attacks import APGD
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> X = np.random.RandomState(0).rand(20, 4).astype(np.float32)
    >>> result = APGD(model, eps=0.2, max_iter=20, random_state=0).run(X)
    >>> bool(np.abs(result.X_adv - X).max() <= 0.2 + 1e-6), result.n_iter <= 20
    (True, True)
    """

    _parameter_constraints: dict = {
        **BaseAttack._parameter_constraints,
        "eps": [Interval(Real, 0, None, closed="left")],
        "norm": NORM_CONSTRAINT,
        "loss": [StrOptions({"ce", "dlr", "margin", "escape"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "n_restarts": [Interval(Integral, 1, None, closed="left")],
        "step_size": [Interval(Real, 0, None, closed="neither"), None],
        "rho": [Interval(Real, 0, 1, closed="both")],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "random_start": ["boolean"],
        "random_state": ["random_state"],
    }

    _accepts_x_init = True

    def __init__(
        self,
        target,
        *,
        eps=0.3,
        norm=np.inf,
        loss="ce",
        max_iter=100,
        n_restarts=1,
        step_size=None,
        rho=0.75,
        momentum=0.75,
        random_start=True,
        random_state=None,
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
        super().__init__(
            target,
            targeted=targeted,
            adaptive=adaptive,
            clip_values=clip_values,
            input_shape=input_shape,
            batch_size=batch_size,
            device=device,
            eot_samples=eot_samples,
            trace=trace,
            verbose=verbose,
        )
        self.eps = eps
        self.norm = norm
        self.loss = loss
        self.max_iter = max_iter
        self.n_restarts = n_restarts
        self.step_size = step_size
        self.rho = rho
        self.momentum = momentum
        self.random_start = random_start
        self.random_state = random_state

    # ------------------------------------------------------------- losses
    def _objective(self, target, y):
        """Per-sample loss to maximise (of the escape scores for ``loss="escape"``, else of the scores)."""
        if self.loss == "ce":
            return self._xent_objective(target, y)
        if self.loss == "escape":
            return self._escape_objective(target, y)
        margin = self._margin_objective(target, y)
        if self.loss == "margin":
            return lambda logits: -margin(logits)
        n_out = target.n_classes + (target.reject_index is not None)
        if n_out < (4 if self.targeted else 3):
            raise ValueError(
                f"loss='dlr' needs at least {4 if self.targeted else 3} outputs; the target has {n_out}. "
                "Use loss='ce' or 'margin'."
            )

        def dlr(logits):
            top = logits.sort(dim=1, descending=True).values
            scale = top[:, 0] - (0.5 * (top[:, 2] + top[:, 3]) if self.targeted else top[:, 2])
            return -margin(logits) / (scale + _DLR_TINY)

        return dlr

    def _escape_objective(self, target, y):
        if target.escape is None:
            raise ValueError(
                "loss='escape' needs a target whose attack surface provides escape scores (such as a "
                "DeepNeuralRejection with a threshold), attacked with adaptive=True; use loss='margin' otherwise."
            )

        def objective(escape):
            # Positive only where the good class clears the flagged score and the bad ones do not:
            # enough for success. In a flat reject region it is the good class's escape score.
            own = escape.gather(1, y[:, None])[:, 0]
            others = escape.scatter(1, y[:, None], float("-inf")).amax(dim=1)
            if self.targeted:
                return torch.minimum(own, -others)
            return torch.minimum(others, -own)

        return objective

    def _value_and_grad(self, target, x, objective):
        if self.loss != "escape":
            return super()._value_and_grad(target, x, objective)
        # The loss follows the escape scores; success is judged on the scores.
        if target.forward_with_escape is not None:  # both from one pass (attack protocol 2)
            return super()._value_and_grad(target, x, objective, forward=target.forward_with_escape)
        # A surface of protocol 1: the escape scores with their gradient, then the scores.
        value, grad, _ = super()._value_and_grad(dataclasses.replace(target, forward=target.escape), x, objective)
        with torch.no_grad():
            logits = self._forward_mean(target, x)
        return value, grad, logits

    # -------------------------------------------------------------- attack
    def _start(self, run, x0, first):
        norm = normalize_norm(self.norm)
        # Restarts after the first always start from a random point.
        return start_point(run, x0, self.eps, norm, self.random_start or not first, use_x_init=first)

    def _perturb(self, run, x0):
        n, dev = x0.shape[0], x0.device
        best_adv = x0.clone()
        best_adv_loss = torch.full((n,), float("-inf"), device=dev, dtype=torch.float64)
        fallback = x0.clone()
        fallback_loss = torch.full((n,), float("-inf"), device=dev, dtype=torch.float64)
        found = torch.zeros(n, dtype=torch.bool, device=dev)
        for restart in range(self.n_restarts):
            rows = torch.nonzero(~found).flatten()
            if rows.numel() == 0:
                break
            sub = run if restart == 0 else run.subset(rows)
            adv, adv_loss, point, point_loss, n_iter = self._single_run(sub, x0[rows], restart == 0)
            adv_loss, point_loss = adv_loss.double(), point_loss.double()
            if restart > 0:
                run.merge(sub, rows)
            run.n_iter += n_iter
            better = adv_loss > best_adv_loss[rows]
            best_adv[rows] = torch.where(view_per_sample(better, adv), adv, best_adv[rows])
            best_adv_loss[rows] = torch.where(better, adv_loss, best_adv_loss[rows])
            better = point_loss > fallback_loss[rows]
            fallback[rows] = torch.where(view_per_sample(better, point), point, fallback[rows])
            fallback_loss[rows] = torch.maximum(point_loss, fallback_loss[rows])
            found = best_adv_loss > float("-inf")
        return torch.where(view_per_sample(found, x0), best_adv, fallback)

    def _single_run(self, run, x0, first):
        """One APGD run. Returns (best successful point, its loss, best point, its loss, iterations)."""
        target, y = run.target, run.y
        norm = normalize_norm(self.norm)
        objective = self._objective(target, y)
        n, dev = x0.shape[0], x0.device
        step = torch.full((n,), float(2 * self.eps if self.step_size is None else self.step_size), device=dev)
        marks = set(_checkpoints(self.max_iter)[1:])
        last_mark = 0

        x = self._start(run, x0, first)
        value, grad, logits = self._value_and_grad(target, x, objective)
        self._trace_step(run, logits, value)
        best_x, best_loss, best_grad = x.clone(), value.clone(), grad.clone()
        adv = x.clone()
        adv_loss = torch.full((n,), float("-inf"), device=dev)

        def keep_success(x, value, logits):
            ok = self._is_success(target, logits, y) & (value > adv_loss)
            adv.copy_(torch.where(view_per_sample(ok, x), x, adv))
            adv_loss.copy_(torch.where(ok, value, adv_loss))

        keep_success(x, value, logits)
        x_prev = x.clone()
        n_increase = torch.zeros(n, device=dev)
        halved_last = torch.ones(n, dtype=torch.bool, device=dev)
        best_at_last_mark = best_loss.clone()
        n_iter = 0
        for k in range(1, self.max_iter + 1):
            a = 1.0 if k == 1 else self.momentum
            z = run.clip_and_project(x + view_per_sample(step, x) * ascent_direction(grad, norm), x0, self.eps, norm)
            x_new = run.clip_and_project(x + a * (z - x) + (1 - a) * (x - x_prev), x0, self.eps, norm)
            x_prev, x = x, x_new
            previous = value
            value, grad, logits = self._value_and_grad(target, x, objective)
            self._trace_step(run, logits, value)
            keep_success(x, value, logits)
            n_iter = k
            n_increase += (value > previous).to(n_increase.dtype)
            improved = value > best_loss
            best_x = torch.where(view_per_sample(improved, x), x, best_x)
            best_grad = torch.where(view_per_sample(improved, x), grad, best_grad)
            best_loss = torch.where(improved, value, best_loss)
            if k in marks:
                few_increases = n_increase < self.rho * (k - last_mark)
                no_progress = ~halved_last & (best_loss <= best_at_last_mark)
                halve = few_increases | no_progress
                step = torch.where(halve, step / 2, step)
                restart = view_per_sample(halve, x)
                x = torch.where(restart, best_x, x)
                x_prev = torch.where(restart, best_x, x_prev)
                grad = torch.where(restart, best_grad, grad)
                n_increase.zero_()
                halved_last, best_at_last_mark, last_mark = halve, best_loss.clone(), k
            if bool((adv_loss > float("-inf")).all()):
                break  # every input of the run is broken
        return adv, adv_loss, best_x, best_loss, n_iter
