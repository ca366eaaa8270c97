"""Run-state of one batch of one attack call: labels, random streams, clip box, trace, progress."""

import numpy as np
import torch

from ._geometry import project
from ._rng import row_uniform


class Run:
    """Run-state of one batch of one :meth:`~skadv.attacks.BaseAttack.run` call.

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
        Iterations run on this batch (see ``n_iter_``).
    progress : tqdm or None
        The call's progress bar (when ``verbose``); :meth:`tick` advances it
        once per iteration.
    """

    def __init__(self, target, y, keys, lo, hi, x_init=None, record=None, progress=None):
        self.target = target
        self.y = y
        self.keys = keys
        self._n_draws = 0
        self.lo = lo
        self.hi = hi
        self.x_init = x_init
        self.record = record
        self.n_iter = 0
        self.progress = progress
        # Per-row range of the observed loss, per restart (stalled-loss check).
        self._loss_lo = self._loss_hi = None
        self._loss_range = torch.zeros(y.shape[0], dtype=torch.float64)

    def uniform(self, shape, device):
        """Uniform float32 draws in [0, 1) of ``shape`` (``shape[0]`` = rows), per-row streams."""
        self._n_draws += 1
        return row_uniform(self.keys, self._n_draws, shape, device)

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
        return self.clip(x0 + project(x - x0, eps, norm))

    def draws_at(self, rows, counters):
        """Random streams of ``rows`` whose draw counters stand at ``counters`` (int64, one per row).

        Its ``uniform`` gives row ``i`` what :meth:`uniform` would give it when this run's
        counter stands at ``counters[i]``: an attack can draw ahead, e.g. the proposals of
        several future iterations at once. Rows may repeat (at different counters).
        """
        return _RowDraws(self.keys[rows.cpu()], counters)

    def tick(self, n=1):
        """``n`` iterations done: advance the progress bar (tqdm redraws it at most every ``mininterval``)."""
        if self.progress is not None and n:
            self.progress.update(n)

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
        child = Run(
            self.target, self.y[rows], self.keys[rows.cpu()], self.lo, self.hi, x_init=x_init, progress=self.progress
        )
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


class _RowDraws:
    """Per-row counter streams (see :meth:`Run.draws_at`)."""

    def __init__(self, keys, counters):
        self.keys, self.counters = keys, counters.cpu()

    def uniform(self, shape, device):
        self.counters = self.counters + 1
        return row_uniform(self.keys, self.counters, shape, device)
