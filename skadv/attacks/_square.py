"""Square Attack (Andriushchenko et al., 2020): score-based black box, L-inf or L2."""

import bisect
from numbers import Integral, Real

import numpy as np
import torch

from .._core import Interval
from ._base import BaseAttack
from ._docs import fill_doc
from ._geometry import NORM_CONSTRAINT, normalize_norm, per_sample_norm, view_per_sample

__all__ = ["Square"]

# Share of the query budget after which the window's share of pixels halves again.
_P_HALVINGS = (0.001, 0.005, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8)
_TINY = 1e-12


def _window_fraction(p_init, iteration, max_iter):
    """``p_init`` halved once per schedule point the query budget has passed."""
    return p_init / 2 ** bisect.bisect_left(_P_HALVINGS, iteration / max_iter)


def _window_mask(starts_h, starts_w, size, height, width):
    """Per-sample boolean masks ``(n, 1, height, width)`` of ``size`` x ``size`` windows."""
    rows = torch.arange(height, device=starts_h.device)[None, :, None]
    cols = torch.arange(width, device=starts_h.device)[None, None, :]
    in_rows = (rows >= starts_h[:, None, None]) & (rows < starts_h[:, None, None] + size)
    inside = in_rows & (cols >= starts_w[:, None, None]) & (cols < starts_w[:, None, None] + size)
    return inside[:, None]


def _nested_squares(height, width):
    """Centred pattern whose value decays as ``sum_{k >= d} 1/(k+1)^2`` with the Chebyshev distance ``d``."""
    ci, cj = height // 2, width // 2
    rows = torch.arange(height)[:, None]
    cols = torch.arange(width)[None, :]
    dist = torch.maximum((rows - ci).abs(), (cols - cj).abs())
    n_rings = max(ci, cj) + 1
    weights = 1.0 / torch.arange(1, n_rings + 1, dtype=torch.float64) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[d] = sum_{k >= d} weights[k]
    pattern = tail[dist.clamp_max(n_rings - 1)]
    return pattern / pattern.norm()


def _two_lobe_pattern(size):
    """Square of side ``size``: a positive nested-square lobe above a negative one, unit L2 norm."""
    top = size // 2
    pattern = torch.zeros(size, size, dtype=torch.float64)
    if top > 0:
        pattern[:top] = _nested_squares(top, size)
    pattern[top:] = -_nested_squares(size - top, size)
    return pattern / pattern.norm()


def _place(pattern, starts_h, starts_w, height, width):
    """Per-sample copies ``(n, 1, height, width)`` of ``pattern`` at the given corners (zero elsewhere)."""
    size = pattern.shape[-1]
    rows = torch.arange(height, device=starts_h.device)[None, :] - starts_h[:, None]
    cols = torch.arange(width, device=starts_h.device)[None, :] - starts_w[:, None]
    mask = _window_mask(starts_h, starts_w, size, height, width)
    r = rows.clamp(0, size - 1)[:, :, None]
    c = cols.clamp(0, size - 1)[:, None, :]
    n = starts_h.shape[0]
    if pattern.dim() == 2:
        pattern = pattern.expand(n, size, size)
    placed = pattern[torch.arange(n, device=starts_h.device)[:, None, None], r, c]
    return placed[:, None] * mask


@fill_doc
class Square(BaseAttack):
    """Square Attack (Andriushchenko et al., 2020): random search on the scores, L-inf or L2.

    A black-box attack that needs only the target's scores (one query per
    input and iteration), not its gradients, so gradient masking does not
    stop it: a white-box attack that does worse than Square has failed.
    Each iteration proposes, per input, a change of the perturbation inside
    a random square window covering a share ``p`` of the image, and keeps it
    when the margin loss (``z_true - max_other z``; against a skadv
    estimator ``max(z_true, z_rejected) - max_other z``, so success means
    misclassified and not flagged) decreases. ``p`` starts at ``p_init`` and
    halves after 0.1 %, 0.5 %, 2 %, 5 %, 10 %, 20 %, 40 %, 60 % and 80 % of
    ``max_iter``. Inputs stop being updated once broken.

    A rejected proposal leaves the input's point as it was, so its next
    proposals are known in advance (each input draws from its own random
    stream): one forward pass evaluates a block of them, and the input
    moves to the first one accepted. The results are those of one query
    per pass (what ``trace=True`` runs); the block lengths, chosen from the
    acceptance rate alone, change only the speed.

    L-inf: the perturbation starts as vertical stripes of ``+-eps``; a
    proposal sets the window of each channel to ``+eps`` or ``-eps``. L2: it
    starts from a grid of random-sign two-lobe patterns scaled to norm
    ``eps``; a proposal replaces a window by a two-lobe pattern plus its old
    content, takes the mass for it from a second window (set to zero), and
    rescales the whole perturbation to norm ``eps``.

    Inputs must be images: ``input_shape`` (or the rows' own shape) must be
    ``(channels, height, width)``.

    Parameters
    ----------
    target : torch.nn.Module, fitted skorch NeuralNet or fitted estimator with ``attack_surface()``
        Model to attack; see :class:`FGSM`. Only its scores are used.

    eps : float, default=0.3
        Radius of the perturbation ball.

    norm : {np.inf, 2, "inf"}, default=np.inf
        Norm of the perturbation ball.

    max_iter : int, default=1000
        Query budget: iterations per input and restart (one forward pass each).

    p_init : float, default=0.8
        Initial share of the pixels a window covers.

    n_restarts : int, default=1
        Runs from fresh random initialisations on the inputs not yet broken.

    random_state : int, RandomState instance or None, default=None
        Seeds the random search. Pass an int for reproducible output.

%(common_params)s

    Attributes
    ----------
%(trace_attribute)s
        Row ``i`` is the state after ``i`` queries of the first run.

    See Also
    --------
    APGD : White-box counterpart.
    AutoAttack : Ensemble that runs Square on the inputs the white-box attacks miss.

    References
    ----------
    M. Andriushchenko, F. Croce, N. Flammarion, M. Hein. "Square Attack: a
    query-efficient black-box adversarial attack via random search",
    ECCV 2020.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from skadv.attacks import Square
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    >>> X = np.random.RandomState(0).rand(10, 64).astype(np.float32)
    >>> attack = Square(model, eps=0.1, max_iter=50, input_shape=(1, 8, 8), random_state=0)
    >>> X_adv = attack.generate(X)
    >>> bool(np.abs(X_adv - X).max() <= 0.1 + 1e-6)
    True
    """

    _parameter_constraints: dict = {
        **BaseAttack._parameter_constraints,
        "eps": [Interval(Real, 0, None, closed="left")],
        "norm": NORM_CONSTRAINT,
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "p_init": [Interval(Real, 0, 1, closed="right")],
        "n_restarts": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    _accepts_x_init = True

    def __init__(
        self,
        target,
        *,
        eps=0.3,
        norm=np.inf,
        max_iter=1000,
        p_init=0.8,
        n_restarts=1,
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
        self.max_iter = max_iter
        self.p_init = p_init
        self.n_restarts = n_restarts
        self.random_state = random_state

    def _signs(self, run, shape, device):
        return torch.where(run.uniform(shape, device) < 0.5, -1.0, 1.0)

    def _corners(self, run, n, size, height, width, device):
        starts_h = (run.uniform((n,), device) * (height - size + 1)).long().clamp_max(height - size)
        starts_w = (run.uniform((n,), device) * (width - size + 1)).long().clamp_max(width - size)
        return starts_h, starts_w

    def _initial_delta(self, run, x0, norm):
        n, channels, height, width = x0.shape
        if norm == np.inf:
            return self.eps * self._signs(run, (n, channels, 1, width), x0.device).expand_as(x0)
        tile = max(min(height, width) // 5, 1)
        delta = torch.zeros_like(x0)
        for top in range(0, height - tile + 1, tile):
            for left in range(0, width - tile + 1, tile):
                pattern = _two_lobe_pattern(tile).to(device=x0.device, dtype=x0.dtype)
                delta[:, :, top : top + tile, left : left + tile] += pattern * self._signs(
                    run, (n, channels, 1, 1), x0.device
                )
        return delta / view_per_sample(per_sample_norm(delta, 2).clamp_min(_TINY), delta) * self.eps

    def _propose(self, run, x0, delta, p, norm):
        """New perturbations for a batch, one random window each."""
        n, channels, height, width = x0.shape
        side = min(height, width)
        size = round(np.sqrt(p * height * width))
        if norm == np.inf:
            size = min(max(size, 1), max(side - 1, 1))
            starts_h, starts_w = self._corners(run, n, size, height, width, x0.device)
            window = _window_mask(starts_h, starts_w, size, height, width)
            values = self.eps * self._signs(run, (n, channels, 1, 1), x0.device)
            return torch.where(window, values, delta)
        size = min(max(size, 3), side)
        if size % 2 == 0:
            size = size - 1 if size == side else size + 1
        starts_h, starts_w = self._corners(run, n, size, height, width, x0.device)
        first = _window_mask(starts_h, starts_w, size, height, width).to(x0.dtype)
        starts_h2, starts_w2 = self._corners(run, n, size, height, width, x0.device)
        second = _window_mask(starts_h2, starts_w2, size, height, width).to(x0.dtype)
        pattern = _two_lobe_pattern(size).to(device=x0.device, dtype=x0.dtype)
        transposed = run.uniform((n,), x0.device) < 0.5
        patterns = torch.where(transposed[:, None, None], pattern.T[None], pattern[None])
        placed = _place(patterns, starts_h, starts_w, height, width)
        placed = placed * self._signs(run, (n, channels, 1, 1), x0.device)

        def channel_norm(t):
            return t.flatten(2).norm(dim=2)[:, :, None, None]

        old = delta * first
        new = placed + old / channel_norm(old).clamp_min(_TINY)
        union = torch.maximum(first, second)
        budget = (self.eps**2 - per_sample_norm(delta, 2) ** 2).clamp_min(0) / channels
        scale = torch.sqrt(view_per_sample(budget, delta) + channel_norm(delta * union) ** 2)
        new = new / channel_norm(new).clamp_min(_TINY) * scale
        proposal = delta * (1 - union) + new * first
        return proposal / view_per_sample(per_sample_norm(proposal, 2).clamp_min(_TINY), proposal) * self.eps

    def _check_image(self, x0):
        if x0.dim() != 4:
            raise ValueError(
                "Square attacks images: set input_shape=(channels, height, width) (or pass rows of that "
                f"shape); got inputs of shape {tuple(x0.shape[1:])}."
            )

    @torch.no_grad()
    def _perturb(self, run, x0):
        self._check_image(x0)
        n = x0.shape[0]
        best = x0.clone()
        best_loss = torch.full((n,), float("inf"), device=x0.device, dtype=torch.float64)
        for restart in range(self.n_restarts):
            rows = torch.nonzero(best_loss >= 0).flatten()
            if rows.numel() == 0:
                break
            sub = run if restart == 0 else run.subset(rows)
            x, loss, n_iter = self._single_run(sub, x0[rows], restart == 0)
            loss = loss.double()
            if restart > 0:
                run.merge(sub, rows)
            run.n_iter += n_iter
            better = loss < best_loss[rows]
            best[rows] = torch.where(view_per_sample(better, x), x, best[rows])
            best_loss[rows] = torch.where(better, loss, best_loss[rows])
        return best

    def _single_run(self, run, x0, first):
        """One random search. Returns (points, their margin loss, queries).

        Every row follows its own sequence of iterations: its proposal at
        iteration ``t`` depends only on its key, ``t`` and its current point.
        A row whose proposals are rejected keeps its point, so the proposals
        of its next iterations are known in advance: each round evaluates a
        block of them in one forward pass, and the row moves to the first one
        accepted (the later ones are dropped). The points, losses and query
        counts are those of one query per iteration (with ``trace=True`` it
        runs so, one iteration a pass); :class:`_BlockPlanner` sizes the
        blocks for speed alone.
        """
        target = run.target
        norm = normalize_norm(self.norm)
        if first and run.x_init is not None:
            x = run.clip_and_project(run.x_init, x0, self.eps, norm)
        else:
            x = run.clip(x0 + self._initial_delta(run, x0, norm))
        logits = self._forward_mean(target, x)
        loss = self._margin_objective(target, run.y)(logits)
        self._trace_step(run, logits, loss)
        n = x0.shape[0]
        done = torch.zeros(n, dtype=torch.int64)  # iterations run per row
        base, per_iter = run._n_draws, None  # draw counter before the first iteration, draws per iteration
        planner, block, cpu_rows = _BlockPlanner(self.batch_size), 1, torch.arange(n)
        while True:
            # margin < 0: broken (misclassified, not flagged); a row also stops at its budget.
            rows = cpu_rows[(loss.cpu() >= 0) & (done < self.max_iter)]
            if rows.numel() == 0:
                break
            # Tracing records the batch once per iteration: one iteration a round.
            lengths = (self.max_iter - done[rows]).clamp_max(1 if run.record is not None else block)
            owner = torch.repeat_interleave(torch.arange(rows.numel()), lengths)
            offset = torch.arange(owner.numel()) - torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
            pair_rows, iteration = rows[owner], done[rows][owner] + offset
            proposal = x0.new_empty((owner.numel(), *x0.shape[1:]))
            counters = base + iteration * (per_iter or 0)  # all at iteration 0 in the first round
            fractions = torch.tensor(
                [_window_fraction(self.p_init, it, self.max_iter) for it in iteration.tolist()], dtype=torch.float64
            )
            for p in fractions.unique().tolist():
                at = torch.nonzero(fractions == p).flatten()
                draws = run.draws_at(pair_rows[at], counters[at])
                at_rows = pair_rows[at].to(x0.device)
                proposal[at.to(x0.device)] = self._propose(draws, x0[at_rows], x[at_rows] - x0[at_rows], p, norm)
                if per_iter is None:  # the first round counts the draws of one iteration
                    per_iter = int(draws.counters[0]) - base
            pair_dev = pair_rows.to(x0.device)
            candidate = run.clip_and_project(x0[pair_dev] + proposal, x0[pair_dev], self.eps, norm)
            cand_logits = self._forward_mean(target, candidate)
            cand_loss = self._margin_objective(target, run.y[pair_dev])(cand_logits)
            accept = (cand_loss < loss[pair_dev]).cpu()
            # Each row takes its first accepted proposal; without one it has run all of its block.
            table = torch.zeros((rows.numel(), int(lengths.max())), dtype=torch.bool)
            table[owner, offset] = accept
            taken = table.any(dim=1)
            first_taken = table.to(torch.int8).argmax(dim=1)
            ran = torch.where(taken, first_taken + 1, lengths)
            done[rows] += ran
            pick = (lengths.cumsum(0) - lengths + first_taken)[taken].to(x0.device)
            moved = rows[taken].to(x0.device)
            x[moved] = candidate[pick]
            loss[moved] = cand_loss[pick].to(loss.dtype)
            logits[moved] = cand_logits[pick].to(logits.dtype)
            if run.record is not None:
                self._trace_step(run, logits, loss)
                continue
            # The loss of a row only decreases: its range is that of its first and last values.
            run.observe_loss(loss)
            run.tick(int(ran.max()))
            planner.observe(int(taken.sum()), int(ran.sum()))
            block = planner.block(int(((loss.cpu() >= 0) & (done < self.max_iter)).sum()))
        n_iter = int(done.max())
        run._n_draws = base + n_iter * (per_iter or 0)
        return x, loss, n_iter


class _BlockPlanner:
    """How many future iterations each row evaluates in Square's next pass.

    Only the speed depends on it, never a result, and it depends on nothing but the
    acceptance counts, so that the passes (and their batches) are the same at every run
    of the same seed. A row runs ``u(k) = (1 - (1 - q)^k) / q`` iterations of a block of
    ``k`` on average (``q``: the recent acceptance rate, ``1 / q`` iterations between two
    accepted proposals); a pass of ``m`` candidates is taken to cost ``OVERHEAD + m``
    candidate evaluations (a forward pass has a fixed cost besides its rows). The block
    maximises ``u(k) / (OVERHEAD + n k)`` for ``n`` rows, with at most ``max_candidates``
    candidates a pass: many rows get blocks of one iteration, a few rows long ones.
    """

    OVERHEAD = 32  # candidate evaluations that cost as much as one pass's fixed overhead
    _DECAY = 0.5  # weight of the acceptance counts of earlier passes

    def __init__(self, max_candidates):
        self.max_candidates = max_candidates
        self.accepted, self.ran = 0.0, 0.0

    def observe(self, n_accepted, n_ran):
        self.accepted = self._DECAY * self.accepted + n_accepted
        self.ran = self._DECAY * self.ran + n_ran

    def block(self, n_rows):
        if n_rows == 0:
            return 1
        rate = (self.accepted + 1) / (self.ran + 2)
        longest = int(max(1, min(self.max_candidates // n_rows, np.ceil(3 / rate))))
        k = np.arange(1, longest + 1)
        gain = (1 - (1 - rate) ** k) / rate / (self.OVERHEAD + n_rows * k)
        return int(k[np.argmax(gain)])
