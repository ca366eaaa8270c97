"""Gradient-sign / projected-gradient attacks: FGSM and PGD."""

from numbers import Integral, Real

import numpy as np
import torch

from .._core import Interval
from ._base import BaseAttack
from ._docs import fill_doc
from ._geometry import NORM_CONSTRAINT, ascent_direction, normalize_norm, start_point, view_per_sample

__all__ = ["FGSM", "PGD"]


@fill_doc
class FGSM(BaseAttack):
    """Fast Gradient Sign Method (Goodfellow et al., 2015).

    One step of size ``eps`` along the sign of the loss gradient (L-inf), or
    along the unit-L2 gradient (``norm=2``, the "fast gradient method"),
    followed by clipping to ``clip_values``:
    ``x_adv = clip(x + eps * sign(grad_x loss(x, y)))``.

    Parameters
    ----------
    target : torch.nn.Module, fitted skorch NeuralNet or fitted estimator with ``attack_surface()``
        Model to attack. A torch module must return logits (log-probabilities
        work as well); a skorch ``NeuralNetClassifier`` whose criterion is
        ``NLLLoss`` is understood to output probabilities. Against a skadv
        detector the attack is adaptive (see ``adaptive``). The target is
        never modified: the attack works on a frozen copy.

    eps : float, default=0.1
        Size of the perturbation (L-inf or L2 radius).

    norm : {np.inf, 2, "inf"}, default=np.inf
        Norm of the perturbation.

%(common_params)s

    Attributes
    ----------
%(trace_attribute)s

    See Also
    --------
    PGD : The iterated, projected version of this attack.

    References
    ----------
    I. Goodfellow, J. Shlens, C. Szegedy. "Explaining and harnessing
    adversarial examples", ICLR 2015.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from skadv.attacks import FGSM
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(4, 3)
    >>> X = np.random.RandomState(0).uniform(0.2, 0.8, size=(5, 4)).astype(np.float32)
    >>> X_adv = FGSM(model, eps=0.1).generate(X)
    >>> X_adv.shape, X_adv.dtype
    ((5, 4), dtype('float32'))
    >>> bool(np.allclose(np.abs(X_adv - X), 0.1))
    True
    """

    _parameter_constraints: dict = {
        **BaseAttack._parameter_constraints,
        "eps": [Interval(Real, 0, None, closed="left")],
        "norm": NORM_CONSTRAINT,
    }

    def __init__(
        self,
        target,
        *,
        eps=0.1,
        norm=np.inf,
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

    def _perturb(self, run, x0):
        target = run.target
        objective = self._xent_objective(target, run.y)
        value, grad, logits = self._value_and_grad(target, x0, objective)
        self._trace_step(run, logits, value)
        run.n_iter = 1
        x_adv = run.clip(x0 + self.eps * ascent_direction(grad, normalize_norm(self.norm)))
        with torch.no_grad():
            logits = self._forward_mean(target, x_adv)
        self._trace_step(run, logits, objective(logits))
        return x_adv


@fill_doc
class PGD(BaseAttack):
    """Projected Gradient Descent (Madry et al., 2018), L-inf or L2.

    Starting from ``x`` (or a uniform random point of the eps-ball when
    ``random_start``), takes ``max_iter`` steps of size ``step_size`` along
    the sign (L-inf) or unit-L2 direction of the loss gradient, each followed
    by a projection onto the eps-ball around ``x`` and clipping to
    ``clip_values``. The loss is the cross-entropy of the true class
    (maximised) or of the target class (minimised); in an adaptive attack on
    a skadv estimator it is ``-log(p_true + p_rejected)``, so the attack
    seeks a wrong class that is also not flagged.

    With ``return_best=True`` (default) each input gets its successful
    iterate of highest loss, so a success is never lost to a later step that
    falls back (e.g. over the detector's threshold); inputs that never
    succeed get the last iterate. ``return_best=False`` returns the last
    iterate for every input, as Madry et al. and ART do.

    Parameters
    ----------
    target : torch.nn.Module, fitted skorch NeuralNet or fitted estimator with ``attack_surface()``
        Model to attack; see :class:`FGSM`.

    eps : float, default=0.3
        Radius of the perturbation ball.

    norm : {np.inf, 2, "inf"}, default=np.inf
        Norm of the perturbation ball.

    step_size : float, default=0.01
        Size of one step (in the norm ``norm``).

    max_iter : int, default=40
        Number of steps.

    random_start : bool, default=True
        Start from a point drawn uniformly from the eps-ball.

    random_state : int, RandomState instance or None, default=None
        Seeds the random start. Pass an int for reproducible output.

    return_best : bool, default=True
        Return each input's successful iterate of highest loss (True) or the
        last iterate (False).

%(common_params)s

    Attributes
    ----------
%(trace_attribute)s
        Row 0 is the starting point, row ``i`` the point after ``i`` steps.

    See Also
    --------
    FGSM : Single-step version.
    PGDLineSearch : L2 PGD whose step size is found by a line search.

    References
    ----------
    A. Madry, A. Makelov, L. Schmidt, D. Tsipras, A. Vladu. "Towards deep
    learning models resistant to adversarial attacks", ICLR 2018.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from skadv.attacks import PGD
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> X = np.random.RandomState(0).rand(20, 4).astype(np.float32)
    >>> attack = PGD(model, eps=0.2, step_size=0.05, max_iter=10, random_state=0)
    >>> X_adv = attack.generate(X)
    >>> bool(np.abs(X_adv - X).max() <= 0.2 + 1e-6)
    True
    >>> bool(X_adv.min() >= 0 and X_adv.max() <= 1)
    True
    """

    _parameter_constraints: dict = {
        **BaseAttack._parameter_constraints,
        "eps": [Interval(Real, 0, None, closed="left")],
        "norm": NORM_CONSTRAINT,
        "step_size": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "random_start": ["boolean"],
        "random_state": ["random_state"],
        "return_best": ["boolean"],
    }

    def __init__(
        self,
        target,
        *,
        eps=0.3,
        norm=np.inf,
        step_size=0.01,
        max_iter=40,
        random_start=True,
        random_state=None,
        return_best=True,
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
        self.step_size = step_size
        self.max_iter = max_iter
        self.random_start = random_start
        self.random_state = random_state
        self.return_best = return_best

    _accepts_x_init = True

    def _perturb(self, run, x0):
        target, y = run.target, run.y
        norm = normalize_norm(self.norm)
        objective = self._xent_objective(target, y)
        x = start_point(run, x0, self.eps, norm, self.random_start)
        best_x = x0.clone()
        best_loss = torch.full((x0.shape[0],), float("-inf"), device=x0.device)

        def keep_if_best(x, value, logits):
            # Successful iterate with the highest loss so far, per input.
            better = self._is_success(target, logits, y) & (value > best_loss)
            best_x.copy_(torch.where(view_per_sample(better, x), x.detach(), best_x))
            best_loss.copy_(torch.where(better, value, best_loss))

        run.n_iter = self.max_iter
        for _ in range(self.max_iter):
            value, grad, logits = self._value_and_grad(target, x, objective)
            self._trace_step(run, logits, value)
            if self.return_best:
                keep_if_best(x, value, logits)
            x = x + self.step_size * ascent_direction(grad, norm)
            x = run.clip_and_project(x, x0, self.eps, norm)
        with torch.no_grad():
            logits = self._forward_mean(target, x)
            value = objective(logits)
        self._trace_step(run, logits, value)
        if self.return_best:
            keep_if_best(x, value, logits)
            found = best_loss > float("-inf")
            x = torch.where(view_per_sample(found, x), best_x, x)
        return x.detach()
