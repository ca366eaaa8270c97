"""Devices, seeding and array shapes: the bottom of skadv's import graph (imports no skadv module)."""

import contextlib

import numpy as np
import torch

from ._warnings import warn_at_caller


@contextlib.contextmanager
def torch_seed(seed, device="cpu"):
    """Run a block under torch's global RNG seeded with ``seed``, restoring it afterwards."""
    devices = []
    if str(device).startswith("cuda") and torch.cuda.is_available():
        devices = [torch.device(device).index or 0]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def resolve_device(device, fitting=True):
    """Map the ``device`` parameter to a torch device string."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        if fitting:
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available on this machine; "
                "use device='cpu' or device='auto'."
            )
        warn_at_caller(f"This estimator was set up for device={device!r} but CUDA is not available; using the CPU.")
        return "cpu"
    return device


def flatten_nd(X):
    """Flatten image-like N-D arrays to 2-D rows, keeping their row shape.

    Torch tensors become numpy arrays first; half-precision floats (float16, bfloat16,
    which numpy cannot take from torch) are widened to float32, exactly.
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu()
        if X.is_floating_point() and X.dtype not in (torch.float32, torch.float64):
            X = X.float()
        X = X.numpy()
    elif getattr(getattr(X, "dtype", None), "name", None) in ("bfloat16", "float16"):
        X = np.asarray(X, dtype=np.float32)  # e.g. ml_dtypes' bfloat16 arrays
    shape = getattr(X, "shape", None)
    if shape is not None and getattr(X, "ndim", 0) > 2:
        return np.asarray(X).reshape(shape[0], -1), tuple(shape[1:])
    return X, None


def is_fitted_attribute(name):
    # scikit-learn's convention (check_is_fitted): trailing underscore, not a dunder.
    return name.endswith("_") and not name.startswith("__")
