"""Orthogonal and selective PGD against classifier + detector (Bryniarski et al., 2022)."""

from numbers import Integral, Real

import numpy as np
import torch

from .._core import Interval, StrOptions
from ._base import BaseAttack
from ._docs import fill_doc
from ._geometry import (
    NORM_CONSTRAINT,
    ascent_direction,
    normalize_norm,
    per_sample_norm,
    start_point,
    view_per_sample,
)

__all__ = ["OrthogonalPGD"]


def _remove_component(g, along):
    """``g`` minus its projection on ``along``, per sample (``g`` where ``along`` is zero)."""
    flat_g, flat_a = g.flatten(1), along.flatten(1)
    sq = (flat_a * flat_a).sum(dim=1)
    coef = torch.where(sq > 0, (flat_g * flat_a).sum(dim=1) / sq.clamp_min(1e-30), torch.zeros_like(sq))
    return g - view_per_sample(coef, g) * along


@fill_doc
class OrthogonalPGD(BaseAttack):
    """PGD that treats classifier and detector as two constraints (Bryniarski et al., 2022).

    Against a skadv estimator, the adaptive scores hold the classifier's K
    scores and the "rejected" score ``z_r``. Instead of one combined loss,
    this attack uses two: the classifier's cross-entropy of the true class on
    the K scores (maximised; targeted: of the target class, minimised) and
    the detector margin ``z_r - max_k z_k`` (minimised; the input is flagged
    while it is positive). At each step:

    - ``mode="orthogonal"``: while the input is classified correctly it
      follows the classifier gradient with its component along the detector
      gradient removed; once misclassified it follows the detector gradient
      with its component along the classifier gradient removed, so neither
      step undoes the other;
    - ``mode="selective"``: it follows the classifier gradient while the
      input is classified correctly, the detector gradient otherwise.

    Steps are signed (L-inf) or unit-L2, projected onto the eps-ball and the
    box. Each input gets its last successful iterate (misclassified and not
    flagged), or its last iterate when none succeeds. With a randomized
    score both gradients are averaged over ``eot_samples`` draws.

    Parameters
    ----------
    target : fitted estimator with ``attack_surface()`` (a detector)
        Attacked adaptively (``adaptive=True``); a target without a detector
        (plain model, or ``adaptive=False``) is refused.

    eps : float, default=0.3
        Radius of the perturbation ball.

    norm : {np.inf, 2, "inf"}, default=np.inf
        Norm of the perturbation ball.

    mode : {"orthogonal", "selective"}, default="orthogonal"
        How the two gradients are combined (see above).

    step_size : float, default=0.01
        Size of one step.

    max_iter : int, default=100
        Number of steps.

    random_start : bool, default=True
        Start from a uniform point of the ball (or from ``x_init`` when given
        to :meth:`generate`).

    random_state : int, RandomState instance or None, default=None
        Seeds the random start.

%(common_params)s

    Attributes
    ----------
%(trace_attribute)s
        ``loss`` is the detector margin (negative: not flagged).

    See Also
    --------
    AutoAttack : Runs this attack among others and keeps the first success per input.

    References
    ----------
    O. Bryniarski, N. Hingun, P. Pachuca, V. Wang, N. Carlini. "Evading
    adversarial example detection defenses with orthogonal projected
    gradient descent", ICLR 2022.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from skadv import ModelDistillationDetector
    >>> from skadv.attacks import OrthogonalPGD
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> X = np.random.RandomState(0).rand(50, 4).astype(np.float32)
    >>> det = ModelDistillationDetector(model, epochs=2, random_state=0).fit(X)
    >>> X_adv = OrthogonalPGD(det, eps=0.2, max_iter=10, random_state=0).generate(X[:5])
    >>> X_adv.shape
    (5, 4)
    """

    _parameter_constraints: dict = {
        **BaseAttack._parameter_constraints,
        "eps": [Interval(Real, 0, None, closed="left")],
        "norm": NORM_CONSTRAINT,
        "mode": [StrOptions({"orthogonal", "selective"})],
        "step_size": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
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
        mode="orthogonal",
        step_size=0.01,
        max_iter=100,
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
        self.mode = mode
        self.step_size = step_size
        self.max_iter = max_iter
        self.random_start = random_start
        self.random_state = random_state

    def _losses_and_grads(self, target, x, y):
        """Classifier loss (to maximise), detector margin (to minimise), their gradients, mean scores."""
        x = x.detach().requires_grad_(True)
        draws = self._eot_draws(target)
        k = target.reject_index
        cls_total, det_total, logits_sum = 0.0, 0.0, 0.0
        for _ in range(draws):
            logits = target.forward(x)
            log_p = torch.log_softmax(logits[:, :k], dim=1).gather(1, y[:, None])[:, 0]
            cls_total = cls_total + (log_p if self.targeted else -log_p)
            det_total = det_total + logits[:, k] - logits[:, :k].amax(dim=1)
            logits_sum = logits_sum + logits.detach()
        cls_loss, det_margin = cls_total / draws, det_total / draws
        (g_cls,) = torch.autograd.grad(cls_loss.sum(), x, retain_graph=True)
        (g_det,) = torch.autograd.grad(-det_margin.sum(), x)
        return cls_loss.detach(), det_margin.detach(), g_cls, g_det, logits_sum / draws

    def _perturb(self, run, x0):
        target, y = run.target, run.y
        if target.reject_index is None:
            raise ValueError(
                "OrthogonalPGD attacks a classifier and its detector together: the target must be a "
                "fitted detector (an estimator with attack_surface()) attacked with adaptive=True. Use APGD or "
                "PGD for a plain model."
            )
        norm = normalize_norm(self.norm)
        x = start_point(run, x0, self.eps, norm, self.random_start)
        best = x.clone()
        ever = torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)
        for _ in range(self.max_iter + 1):
            _, det_margin, g_cls, g_det, logits = self._losses_and_grads(target, x, y)
            self._trace_step(run, logits, det_margin)
            success = self._is_success(target, logits, y)
            best = torch.where(view_per_sample(success, x), x, best)
            ever |= success
            if run.n_iter == self.max_iter:
                break
            run.n_iter += 1
            pred = logits[:, : target.reject_index].argmax(dim=1)
            on_class = (pred != y) if self.targeted else (pred == y)
            if self.mode == "orthogonal":
                g_cls, g_det = _remove_component(g_cls, g_det), _remove_component(g_det, g_cls)
            g = torch.where(view_per_sample(on_class, x), g_cls, g_det)
            # A row whose chosen gradient vanished follows the other one.
            dead = per_sample_norm(g, 2) == 0
            g = torch.where(view_per_sample(dead & on_class, x), g_det, g)
            x = run.clip_and_project(x + self.step_size * ascent_direction(g, norm), x0, self.eps, norm)
        return torch.where(view_per_sample(ever, x), best, x).detach()
