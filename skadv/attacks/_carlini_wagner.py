"""Carlini & Wagner's L2 attack with a binary search over the constant c."""

from numbers import Integral, Real

import torch

from .._core import Interval
from ._base import BaseAttack
from ._docs import fill_doc
from ._geometry import view_per_sample

__all__ = ["CarliniWagnerL2"]

# Upper bound of c meaning "no successful c seen yet".
_NO_UPPER = 1e10
# Keep tanh's inverse finite at the box edges.
_ATANH_MARGIN = 1e-6


@fill_doc
class CarliniWagnerL2(BaseAttack):
    """Carlini & Wagner's L2 attack (2017).

    Minimises ``||x' - x||_2^2 + c * max(margin(x'), -confidence)`` with
    Adam, in the change of variables ``x' = lo + (hi - lo) (tanh(w) + 1) / 2``
    that keeps ``x'`` inside ``clip_values`` without clipping. The margin is
    ``z_true - max_{j != true} z_j`` (untargeted), ``max_{j != t} z_j - z_t``
    (targeted) or, adaptively against a skadv estimator,
    ``max(z_true, z_rejected) - max_{other} z_j``. A per-sample binary search
    over ``c`` (``binary_search_steps`` rounds starting at ``initial_const``;
    c is multiplied by 10 until a first success, bisected afterwards) keeps,
    for each input, the smallest successful perturbation. Inputs for which no
    adversarial example was found are returned unchanged.

    Parameters
    ----------
    target : torch.nn.Module, fitted skorch NeuralNet or fitted estimator with ``attack_surface()``
        Model to attack; see :class:`FGSM`.

    eps : float or None, default=None
        Optional L2 budget: adversarial examples farther than ``eps`` from
        their input count as failures and the input is returned unchanged.
        This makes the attack comparable with bounded attacks (e.g. in
        :func:`~skadv.metrics.security_evaluation`). None means unbounded.

    confidence : float, default=0.0
        Margin ``kappa`` by which the adversarial class must win.

    initial_const : float, default=1e-2
        First value of ``c``.

    binary_search_steps : int, default=5
        Number of rounds of the search over ``c``.

    max_iter : int, default=100
        Adam iterations per round.

    learning_rate : float, default=1e-2
        Adam's learning rate.

%(common_params)s

    Attributes
    ----------
%(trace_attribute)s
        Rows run over all rounds of the binary search (``binary_search_steps
        * max_iter``); ``loss`` is the full C&W objective.

    See Also
    --------
    PGD : Bounded attack with a fixed budget.

    References
    ----------
    N. Carlini, D. Wagner. "Towards evaluating the robustness of neural
    networks", IEEE S&P 2017.
    N. Carlini, D. Wagner. "Adversarial examples are not easily detected:
    bypassing ten detection methods", AISec 2017.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from skadv.attacks import CarliniWagnerL2
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(4, 3)
    >>> X = np.random.RandomState(0).uniform(0.3, 0.7, size=(10, 4)).astype(np.float32)
    >>> attack = CarliniWagnerL2(model, initial_const=1.0, max_iter=50, learning_rate=0.05)
    >>> X_adv = attack.generate(X)
    >>> pred = model(torch.as_tensor(X)).argmax(1).numpy()
    >>> pred_adv = model(torch.as_tensor(X_adv)).argmax(1).numpy()
    >>> bool(np.mean(pred_adv != pred) > 0.5)
    True
    """

    _parameter_constraints: dict = {
        **BaseAttack._parameter_constraints,
        "eps": [Interval(Real, 0, None, closed="neither"), None],
        "confidence": [Interval(Real, 0, None, closed="left")],
        "initial_const": [Interval(Real, 0, None, closed="neither")],
        "binary_search_steps": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        target,
        *,
        eps=None,
        confidence=0.0,
        initial_const=1e-2,
        binary_search_steps=5,
        max_iter=100,
        learning_rate=1e-2,
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
        self.confidence = confidence
        self.initial_const = initial_const
        self.binary_search_steps = binary_search_steps
        self.max_iter = max_iter
        self.learning_rate = learning_rate

    @staticmethod
    def _to_box(run, w):
        if run.lo is None:
            return w
        return run.lo + (run.hi - run.lo) * (torch.tanh(w) + 1) / 2

    @staticmethod
    def _from_box(run, x):
        if run.lo is None:
            return x.clone()
        unit = 2 * (x - run.lo) / (run.hi - run.lo) - 1
        return torch.atanh(unit.clamp(-1 + _ATANH_MARGIN, 1 - _ATANH_MARGIN))

    def _perturb(self, run, x0):
        target, y = run.target, run.y
        margin_fn = self._margin_objective(target, y)
        n, dev = x0.shape[0], x0.device
        const = torch.full((n,), float(self.initial_const), device=dev)
        lower = torch.zeros(n, device=dev)
        upper = torch.full((n,), _NO_UPPER, device=dev)
        best_l2 = torch.full((n,), float("inf"), device=dev)
        best_adv = x0.clone()
        w_start = self._from_box(run, x0)
        draws = self._eot_draws(target)

        for _ in range(self.binary_search_steps):
            w = w_start.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=self.learning_rate)
            round_success = torch.zeros(n, dtype=torch.bool, device=dev)
            for _ in range(self.max_iter):
                x = self._to_box(run, w)
                margin, logits = 0.0, 0.0
                for _ in range(draws):
                    out = target.forward(x)
                    margin = margin + margin_fn(out)
                    logits = logits + out.detach()
                margin, logits = margin / draws, logits / draws
                l2_sq = ((x - x0) ** 2).reshape(n, -1).sum(dim=1)
                loss = l2_sq + const * margin.clamp_min(-self.confidence)
                self._trace_step(run, logits, loss)

                with torch.no_grad():
                    success = (margin.detach() < 0) & (margin.detach() <= -self.confidence)
                    l2 = l2_sq.detach().sqrt()
                    better = success & (l2 < best_l2)
                    best_l2 = torch.where(better, l2, best_l2)
                    best_adv = torch.where(view_per_sample(better, x0), x.detach(), best_adv)
                    round_success |= success

                optimizer.zero_grad()
                loss.sum().backward()
                optimizer.step()
            run.n_iter += self.max_iter

            # Binary search on c, per sample.
            upper = torch.where(round_success, torch.minimum(upper, const), upper)
            lower = torch.where(round_success, lower, torch.maximum(lower, const))
            found_upper = upper < _NO_UPPER
            const = torch.where(found_upper, (lower + upper) / 2, const * 10)

        if self.eps is not None:
            too_far = best_l2 > self.eps
            best_adv = torch.where(view_per_sample(too_far, x0), x0, best_adv)
        return best_adv.detach()
