"""Counter-based random streams, one per row (splitmix64 on int64 tensors).

A row's draws depend on a key derived from the row's own values and the
call's seed, and on how many draws came before, never on the other rows of
its batch: an input gets the same random start whatever it is batched with.
"""

import numpy as np
import torch


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


def row_keys(x0, seed):
    """One int64 key per row from the row's values and the call's seed."""
    bits = x0.detach().to("cpu", torch.float32).contiguous().view(torch.int32).to(torch.int64).flatten(1)
    position = torch.arange(bits.shape[1], dtype=torch.int64)
    key = _mix64(bits ^ _mix64(position * _GOLDEN + 1)).sum(dim=1)
    return _mix64(key ^ _mix64(torch.tensor(int(seed), dtype=torch.int64)))


def row_uniform(keys, draw, shape, device):
    """Uniform float32 draws in [0, 1) of ``shape`` (``shape[0]`` = rows) for draw number ``draw``.

    Row ``i`` of the result depends only on ``keys[i]`` and ``draw`` (an int, or an int64
    tensor ``(n,)`` holding each row's own draw number).
    """
    per_row = int(np.prod(shape[1:], dtype=np.int64))
    counter = _mix64(torch.as_tensor(draw, dtype=torch.int64).reshape(-1, 1) * _GOLDEN)
    z = _mix64(keys[:, None] ^ _mix64(torch.arange(per_row, dtype=torch.int64)[None] + counter))
    u = _shift_right(z, 11).to(torch.float64) * 2.0**-53
    return u.to(torch.float32).reshape(shape).to(device)
