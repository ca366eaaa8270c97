"""Image data sets built from data that ships with scikit-learn (no download).

:func:`load_digits28` turns scikit-learn's 1797 real 8x8 digits into as many 28x28
"MNIST-like" rows as needed: each digit is upscaled to 20x20, padded to 28x28 (MNIST's
framing), moved by a small random rotation and shift, and given pixel noise. It is the
workload at the scale of the published detectors' experiments (e.g. the CNN of Deep
Neural Rejection, whose hidden layers then have 18432/6400/4096 features).

Examples
--------
>>> from skadv.datasets import load_digits28
>>> X, y = load_digits28(n_samples=5, random_state=0)
>>> X.shape, X.dtype.name, y.shape
((5, 784), 'float32', (5,))
>>> bool(X.min() >= 0.0 and X.max() <= 1.0)
True
"""

import numbers

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params
from torch.nn import functional as F

__all__ = ["load_digits28"]

# Rows generated per torch pass: bounds the memory of the (n, 1, 28, 28) temporaries.
_CHUNK_ROWS = 4096


@validate_params(
    {
        "n_samples": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "max_rotation": [Interval(numbers.Real, 0, 180, closed="both")],
        "max_shift": [Interval(numbers.Real, 0, None, closed="left")],
        "noise": [Interval(numbers.Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def load_digits28(n_samples=None, *, max_rotation=15.0, max_shift=2.0, noise=0.05, random_state=None):
    """28x28 grey digit images made from scikit-learn's 8x8 digits.

    Row ``i`` is digit ``i % 1797`` of :func:`sklearn.datasets.load_digits` (the 1797
    digits in a shuffled order), scaled to [0, 1], upscaled bilinearly to 20x20 and
    centred in a 28x28 frame, then rotated by an angle uniform in
    ``[-max_rotation, max_rotation]`` degrees and shifted by up to ``max_shift`` pixels
    in each direction (``affine_grid``/``grid_sample``), plus Gaussian pixel noise of
    standard deviation ``noise``, clipped to [0, 1].

    Parameters
    ----------
    n_samples : int, default=None
        Number of rows; None gives one per original digit (1797).
    max_rotation : float, default=15.0
        Largest rotation in degrees.
    max_shift : float, default=2.0
        Largest shift in pixels, per axis.
    noise : float, default=0.05
        Standard deviation of the pixel noise.
    random_state : int, RandomState instance or None, default=None
        Seeds the digit order, the transformations and the noise.

    Returns
    -------
    X : ndarray of shape (n_samples, 784), float32
        Images as rows (reshape to ``(-1, 1, 28, 28)`` for a CNN), values in [0, 1].
    y : ndarray of shape (n_samples,), int64
        Digit labels 0-9.

    Examples
    --------
    >>> from skadv.datasets import load_digits28
    >>> X, y = load_digits28(n_samples=3000, random_state=0)
    >>> X.shape
    (3000, 784)
    >>> sorted(set(y.tolist())) == list(range(10))
    True
    """
    rng = check_random_state(random_state)
    digits, labels = load_digits(return_X_y=True)
    n_samples = len(digits) if n_samples is None else int(n_samples)
    order = rng.permutation(len(digits))
    index = order[np.arange(n_samples) % len(digits)]
    angles = np.deg2rad(rng.uniform(-max_rotation, max_rotation, n_samples))
    # affine_grid works in normalised coordinates: the 28-pixel frame spans [-1, 1].
    shifts = rng.uniform(-max_shift, max_shift, (n_samples, 2)) * (2.0 / 28.0)
    noise_seed = int(rng.randint(np.iinfo(np.int32).max))

    images = torch.as_tensor(digits / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    framed = F.pad(F.interpolate(images, size=(20, 20), mode="bilinear", align_corners=False), (4, 4, 4, 4))
    cos, sin = torch.as_tensor(np.cos(angles), dtype=torch.float32), torch.as_tensor(np.sin(angles), dtype=torch.float32)
    theta = torch.stack(
        [torch.stack([cos, -sin, torch.as_tensor(shifts[:, 0], dtype=torch.float32)], 1),
         torch.stack([sin, cos, torch.as_tensor(shifts[:, 1], dtype=torch.float32)], 1)],
        dim=1,
    )
    generator = torch.Generator().manual_seed(noise_seed)
    X = np.empty((n_samples, 28 * 28), dtype=np.float32)
    for start in range(0, n_samples, _CHUNK_ROWS):
        rows = slice(start, start + _CHUNK_ROWS)
        source = framed[torch.as_tensor(index[rows])]
        grid = F.affine_grid(theta[rows], list(source.shape), align_corners=False)
        moved = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        moved = moved + noise * torch.randn(moved.shape, generator=generator)
        X[rows] = moved.clamp_(0.0, 1.0).reshape(len(source), -1).numpy()
    return X, labels[index].astype(np.int64)
