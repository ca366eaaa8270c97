"""Image corruptions at five severities, for harmful-drift experiments.

Images are rows of ``X`` (values in ``clip_values``, default [0, 1]) reshaped to
``input_shape``: ``(H, W)`` or ``(C, H, W)``; square grey images need no shape. Severities
follow Hendrycks & Dietterich (2019), with the blur radius in pixels of the given image.

Examples
--------
>>> import numpy as np
>>> from skadv.corruptions import corrupt
>>> X = np.full((2, 64), 0.5)
>>> float(corrupt(X, "brightness", severity=2).max())
0.7
"""

import numbers

import numpy as np
from scipy import ndimage
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, validate_data

from ._core import Interval, StrOptions

__all__ = [
    "CORRUPTIONS",
    "ImageCorruption",
    "brightness",
    "corrupt",
    "gaussian_blur",
    "gaussian_noise",
    "pixelate",
]

# Per-severity strengths (severity 1..5).
_NOISE_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)
_BLUR_SIGMA = (0.5, 0.75, 1.0, 1.5, 2.0)
_BRIGHTNESS_SHIFT = (0.1, 0.2, 0.3, 0.4, 0.5)
_PIXELATE_FACTOR = (0.6, 0.5, 0.4, 0.3, 0.25)


def _as_images(X, input_shape):
    X = check_array(X, dtype=np.float64)
    n, n_features = X.shape
    if input_shape is None:
        side = round(np.sqrt(n_features))
        if side * side != n_features:
            raise ValueError(
                f"Rows of {n_features} values are not square images; pass input_shape=(C, H, W) or (H, W)."
            )
        input_shape = (side, side)
    input_shape = tuple(input_shape)
    if int(np.prod(input_shape)) != n_features or len(input_shape) not in (2, 3):
        raise ValueError(f"input_shape={input_shape} does not describe rows of {n_features} values as images.")
    shape = input_shape if len(input_shape) == 3 else (1,) + input_shape
    return X.reshape((n,) + shape)


def _check_severity(severity):
    if not isinstance(severity, numbers.Integral) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}.")
    return int(severity) - 1


def _finish(images, n, clip_values):
    out = images.reshape(n, -1)
    return out if clip_values is None else np.clip(out, *clip_values)


def gaussian_noise(X, severity=1, *, input_shape=None, clip_values=(0, 1), random_state=None):
    """Add i.i.d. Gaussian noise with standard deviation 0.08–0.38 (severity 1–5).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    severity : int in 1..5, default=1
    input_shape : tuple, default=None
    clip_values : (float, float) or None, default=(0, 1)
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X_corrupted : ndarray of shape (n_samples, n_features)
    """
    sigma = _NOISE_SIGMA[_check_severity(severity)]
    images = _as_images(X, input_shape)
    rng = check_random_state(random_state)
    return _finish(images + rng.normal(scale=sigma, size=images.shape), len(images), clip_values)


def gaussian_blur(X, severity=1, *, input_shape=None, clip_values=(0, 1)):
    """Blur each channel with a Gaussian of 0.5–2 pixels (severity 1–5).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    severity : int in 1..5, default=1
    input_shape : tuple, default=None
    clip_values : (float, float) or None, default=(0, 1)

    Returns
    -------
    X_corrupted : ndarray of shape (n_samples, n_features)
    """
    sigma = _BLUR_SIGMA[_check_severity(severity)]
    images = _as_images(X, input_shape)
    blurred = ndimage.gaussian_filter(images, sigma=(0, 0, sigma, sigma), mode="nearest")
    return _finish(blurred, len(images), clip_values)


def brightness(X, severity=1, *, input_shape=None, clip_values=(0, 1)):
    """Brighten by adding 0.1–0.5 (severity 1–5), then clip.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    severity : int in 1..5, default=1
    input_shape : tuple, default=None
    clip_values : (float, float) or None, default=(0, 1)

    Returns
    -------
    X_corrupted : ndarray of shape (n_samples, n_features)
    """
    shift = _BRIGHTNESS_SHIFT[_check_severity(severity)]
    images = _as_images(X, input_shape)
    return _finish(images + shift, len(images), clip_values)


def _box_down_nearest_up(size, factor):
    """Averaging matrix to ``round(size * factor)`` cells and nearest-neighbour matrix back."""
    small = max(1, round(size * factor))
    cell = np.minimum((np.arange(size) * small) // size, small - 1)
    up = np.zeros((size, small))
    up[np.arange(size), cell] = 1.0
    down = up.T / up.sum(axis=0)[:, None]
    return down, up


def pixelate(X, severity=1, *, input_shape=None, clip_values=(0, 1)):
    """Downscale by averaging to 60 %–25 % of the side (severity 1–5), then upscale blockwise.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    severity : int in 1..5, default=1
    input_shape : tuple, default=None
    clip_values : (float, float) or None, default=(0, 1)

    Returns
    -------
    X_corrupted : ndarray of shape (n_samples, n_features)
    """
    factor = _PIXELATE_FACTOR[_check_severity(severity)]
    images = _as_images(X, input_shape)
    down_h, up_h = _box_down_nearest_up(images.shape[2], factor)
    down_w, up_w = _box_down_nearest_up(images.shape[3], factor)
    small = np.einsum("ih,nchw,jw->ncij", down_h, images, down_w)
    return _finish(np.einsum("hi,ncij,wj->nchw", up_h, small, up_w), len(images), clip_values)


CORRUPTIONS = {
    "gaussian_noise": gaussian_noise,
    "gaussian_blur": gaussian_blur,
    "brightness": brightness,
    "pixelate": pixelate,
}


def corrupt(X, kind, severity=1, *, input_shape=None, clip_values=(0, 1), random_state=None):
    """Apply the corruption named ``kind`` (a key of :data:`CORRUPTIONS`).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    kind : {'gaussian_noise', 'gaussian_blur', 'brightness', 'pixelate'}
    severity : int in 1..5, default=1
    input_shape : tuple, default=None
    clip_values : (float, float) or None, default=(0, 1)
    random_state : int, RandomState instance or None, default=None
        Used by random corruptions only.

    Returns
    -------
    X_corrupted : ndarray of shape (n_samples, n_features)
    """
    if kind not in CORRUPTIONS:
        raise ValueError(f"Unknown corruption {kind!r}; choose one of {sorted(CORRUPTIONS)}.")
    kwargs = {"input_shape": input_shape, "clip_values": clip_values}
    if kind == "gaussian_noise":
        kwargs["random_state"] = random_state
    return CORRUPTIONS[kind](X, severity, **kwargs)


class ImageCorruption(TransformerMixin, BaseEstimator):
    """Transformer applying one image corruption, for pipelines and parameter sweeps.

    Parameters
    ----------
    kind : {'gaussian_noise', 'gaussian_blur', 'brightness', 'pixelate'}, default='gaussian_noise'
    severity : int in 1..5, default=1
    input_shape : tuple, default=None
    clip_values : tuple or None, default=(0, 1)
    random_state : int, RandomState instance or None, default=None

    Examples
    --------
    >>> import numpy as np
    >>> from skadv.corruptions import ImageCorruption
    >>> X = np.random.RandomState(0).rand(3, 64)
    >>> ImageCorruption("pixelate", severity=5).fit_transform(X).shape
    (3, 64)
    """

    _parameter_constraints = {
        "kind": [StrOptions(set(CORRUPTIONS))],
        "severity": [Interval(numbers.Integral, 1, 5, closed="both")],
        "input_shape": [tuple, list, None],
        "clip_values": [tuple, list, None],
        "random_state": ["random_state"],
    }

    def __init__(self, kind="gaussian_noise", severity=1, *, input_shape=None, clip_values=(0, 1), random_state=None):
        self.kind = kind
        self.severity = severity
        self.input_shape = input_shape
        self.clip_values = clip_values
        self.random_state = random_state

    def fit(self, X, y=None):
        """Validate parameters and record the input width; learns nothing."""
        self._validate_params()
        validate_data(self, X)
        return self

    def transform(self, X):
        """Return the corrupted rows."""
        X = validate_data(self, X, reset=False)
        return corrupt(
            X, self.kind, self.severity, input_shape=self.input_shape,
            clip_values=self.clip_values, random_state=self.random_state,
        )
