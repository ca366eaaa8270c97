"""L2 projected gradient descent with an exponential line search (secml-style)."""

from numbers import Integral, Real

import torch

from .._core import Interval
from ._base import BaseAttack
from ._docs import fill_doc
from ._geometry import normalize_l2

__all__ = ["PGDLineSearch"]


@fill_doc
class PGDLineSearch(BaseAttack):
    """L2 PGD with an exponential line search and a reject-aware objective.

    The attack of secml's ``CAttackEvasionPGDLS``, used in the seeds against
    Deep Neural Rejection. At each iteration it takes the normalized
    gradient direction ``d`` of the objective and searches the step along
    it: starting from ``step_size`` it keeps *doubling* the step while the
    objective keeps decreasing; if the first step does not decrease it, it
    *halves* the step until it does (at most ``max_line_search`` doublings or
    halvings). Every candidate is projected onto the L2 ball of radius
    ``eps`` and clipped to ``clip_values``. A sample whose objective improves
    by less than ``tol`` is converged; the attack stops when all are.

    The objective (minimised) is the margin ``z_true - max_{j != true} z_j``
    of the model's scores. Against a skadv estimator (DNR, or a detector
    through its extra "rejected" score) it is
    ``max(z_true, z_rejected) - max_{j not in {true, rejected}} z_j``: while
    the point is rejected its largest "bad" score is the reject score, so the
    attack then minimises the reject score, as secml does for DNR. With
    ``targeted=True`` it is ``max_{j != target} z_j - z_target``.

    All candidate steps of a batch are evaluated in one forward pass, with no
    per-sample Python loop.

    Parameters
    ----------
    target : torch.nn.Module, fitted skorch NeuralNet or fitted estimator with ``attack_surface()``
        Model to attack; see :class:`FGSM`.

    eps : float, default=2.0
        Radius of the L2 ball of allowed perturbations.

    step_size : float, default=0.1
        First step length tried by the line search (secml's ``eta``).

    max_iter : int, default=50
        Maximum number of gradient iterations.

    max_line_search : int, default=6
        Maximum number of doublings (and of halvings) per line search.

    tol : float, default=1e-6
        A sample whose objective decreases by less than ``tol`` in an
        iteration is considered converged and stops moving.

%(common_params)s

    Attributes
    ----------
%(trace_attribute)s
        Row 0 is the starting point; converged batches are padded with their
        last value.

    See Also
    --------
    PGD : Fixed-step PGD, L-inf or L2.

    References
    ----------
    M. Melis, A. Demontis, M. Pintor, A. Sotgiu, B. Biggio. "secml: A Python
    library for secure and explainable machine learning", 2019.
    A. Sotgiu et al. "Deep neural rejection against adversarial examples",
    EURASIP J. Inf. Security, 2020.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from skadv.attacks import PGDLineSearch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(4, 3)
    >>> X = np.random.RandomState(0).rand(10, 4).astype(np.float32)
    >>> X_adv = PGDLineSearch(model, eps=0.5, max_iter=20).generate(X)
    >>> bool(np.linalg.norm(X_adv - X, axis=1).max() <= 0.5 + 1e-5)
    True
    """

    _parameter_constraints: dict = {
        **BaseAttack._parameter_constraints,
        "eps": [Interval(Real, 0, None, closed="left")],
        "step_size": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "max_line_search": [Interval(Integral, 0, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        target,
        *,
        eps=2.0,
        step_size=0.1,
        max_iter=50,
        max_line_search=6,
        tol=1e-6,
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
        self.step_size = step_size
        self.max_iter = max_iter
        self.max_line_search = max_line_search
        self.tol = tol

    @torch.no_grad()
    def _objective_at(self, target, objective, x):
        return objective(self._forward_mean(target, x))

    def _perturb(self, run, x0):
        target, y = run.target, run.y
        objective = self._margin_objective(target, y)
        n, m = x0.shape[0], self.max_line_search
        n_steps = 2 * m + 1
        # The same objective for all candidates, flattened step-major.
        candidate_objective = self._margin_objective(target, y.repeat(n_steps))
        n, m = x0.shape[0], self.max_line_search
        # Step lengths: step_size * 2**k for k = 0..m (doubling), then
        # step_size * 2**-k for k = 1..m (halving).
        up = self.step_size * 2.0 ** torch.arange(0, m + 1, dtype=x0.dtype, device=x0.device)
        down = self.step_size * 2.0 ** -torch.arange(1, m + 1, dtype=x0.dtype, device=x0.device)
        steps = torch.cat([up, down])

        x = x0.clone()
        active = torch.ones(n, dtype=torch.bool, device=x0.device)
        for it in range(self.max_iter):
            value, grad, logits = self._value_and_grad(target, x, objective)
            self._trace_step(run, logits, value)
            direction = -normalize_l2(grad)

            # All candidates of the batch in one pass: shape (n_steps * n, ...).
            shape = (n_steps,) + (1,) * x.dim()
            cand = x.unsqueeze(0) + steps.reshape(shape) * direction.unsqueeze(0)
            cand = run.clip_and_project(cand.flatten(0, 1), x0.repeat(n_steps, *([1] * (x0.dim() - 1))), self.eps, 2)
            cand = cand.reshape(n_steps, *x.shape)
            values = self._objective_at(target, candidate_objective, cand.flatten(0, 1)).reshape(n_steps, n)
            val_up, val_down = values[: m + 1], values[m + 1 :]

            # Doubling: keep growing while each step improves on the previous one.
            prev = torch.cat([value[None], val_up[:-1]])
            n_up = torch.cumprod((val_up < prev).to(torch.int64), dim=0).sum(dim=0)
            # Halving (only when the first step fails): first improving shorter step.
            down_ok = val_down < value[None]
            has_down = down_ok.any(dim=0)
            first_down = down_ok.to(torch.int64).argmax(dim=0)

            choice = torch.where(n_up > 0, n_up - 1, m + 1 + first_down)
            moved = (n_up > 0) | has_down
            best = values.gather(0, choice[None])[0]
            improved = moved & (value - best > self.tol)
            update = active & moved
            x_new = cand[choice, torch.arange(n, device=x0.device)]
            x = torch.where(update.reshape(-1, *([1] * (x.dim() - 1))), x_new, x)
            active &= improved
            run.n_iter = it + 1
            if not bool(active.any()):
                break
        if run.record is not None:
            with torch.no_grad():
                logits = self._forward_mean(target, x)
            self._trace_step(run, logits, objective(logits))
        return x.detach()
