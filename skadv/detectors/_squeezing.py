"""Feature squeezing baseline: change of the prediction when the input is squeezed."""

import numbers
from typing import ClassVar

import numpy as np
import torch

from .._core import Interval, fill_detector_doc
from ..base import BaseDetector

SQUEEZERS = ("bit_depth", "median")
_DEFAULT_SQUEEZERS = ("bit_depth",)


def reduce_bit_depth(x, bit_depth, value_range=(0.0, 1.0)):
    """Round ``x`` (clipped to ``value_range``) to ``2**bit_depth`` evenly spaced levels.

    Straight-through: the values are the rounded ones, the gradient is the identity's
    (rounding itself has zero gradient almost everywhere).
    """
    low, high = value_range
    levels = 2**bit_depth - 1
    unit = ((x - low) / (high - low)).clamp(0, 1)
    squeezed = (torch.round(unit * levels) / levels * (high - low) + low).detach()
    return squeezed + (x - x.detach())  # exactly ``squeezed``; d/dx = 1


def median_smooth(x, size):
    """Median over ``size × size`` windows of the last two axes, as ``scipy.ndimage.median_filter``.

    Same window placement (``size // 2`` pixels before the centre), same symmetric
    border (scipy's 'reflect') and, for even sizes, the same upper median. Differentiable:
    each output's gradient goes to the input pixel it selected.
    """
    before, after = size // 2, size - 1 - size // 2
    height, width = x.shape[-2:]
    rows, cols = (
        torch.as_tensor(np.pad(np.arange(n), (before, after), mode="symmetric"), device=x.device)
        for n in (height, width)
    )
    padded = x.index_select(-2, rows).index_select(-1, cols)
    windows = padded.unfold(-2, size, 1).unfold(-2, size, 1).flatten(-2)
    return windows.kthvalue(size * size // 2 + 1, dim=-1).values


@fill_detector_doc
class FeatureSqueezingDetector(BaseDetector):
    """Flag inputs whose prediction changes when they are squeezed.

    Squeezing (reducing the colour depth, smoothing) removes detail a classifier should
    not depend on; adversarial perturbations live in such detail. The score of a row is
    the largest L1 distance between the classifier's softmax on the row and on one of
    its squeezed versions.

    Parameters
    ----------
%(model)s
    squeezers : sequence of {'bit_depth', 'median'}, default=('bit_depth',)
        'bit_depth': rounding to ``2**bit_depth`` levels within ``value_range``.
        'median': median smoothing over ``median_size × median_size`` windows of each
        channel of an image; rows must be images: set ``input_shape`` to ``(C, H, W)``
        or ``(H, W)`` (e.g. ``(1, 8, 8)`` for digits) or pass N-D images. Xu et al.'s
        joint detector for MNIST is ``['bit_depth', 'median']`` with 1 bit and 2x2
        windows; on digits the median squeezer alone separates PGD rows poorly and
        lowers the joint AUROC (``benchmarks/baselines.py``), hence the default.
    bit_depth : int, default=1
        Bits kept by the 'bit_depth' squeezer. Xu et al. use 1 for grayscale digits
        (MNIST) and 5 for colour images (CIFAR-10, ImageNet).
    median_size : int, default=2
        Window side of the 'median' squeezer (Xu et al.: 2).
    value_range : tuple of (float, float), default=(0.0, 1.0)
        Range of the input values for 'bit_depth' (values outside are clipped).
%(detector_params)s
%(input_params)s

    Attributes
    ----------
%(model_attributes)s
%(detector_attributes)s

    See Also
    --------
    ConfidenceDetector : the classifier's own confidence as the score.

    Notes
    -----
    Bit-depth reduction has zero gradient almost everywhere. Adaptive attacks see it
    through a straight-through estimate (BPDA; Athalye et al., 2018): forward squeezed,
    backward the identity. Median smoothing is differentiable as it is.

    References
    ----------
    W. Xu, D. Evans, Y. Qi. "Feature squeezing: detecting adversarial examples in
    deep neural networks", NDSS 2018.

    A. Athalye, N. Carlini, D. Wagner. "Obfuscated gradients give a false sense of
    security", ICML 2018.

    Examples
    --------
    >>> import torch
    >>> from sklearn.datasets import load_digits
    >>> from skadv import FeatureSqueezingDetector
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16.0
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    >>> det = FeatureSqueezingDetector(net, squeezers=['bit_depth', 'median'], input_shape=(1, 8, 8))
    >>> det = det.fit(X[:1000])
    >>> det.predict(X[1000:1005]).shape
    (5,)
    >>> float((det.predict(X[:1000]) == -1).mean())
    0.05
    """

    _parameter_constraints: ClassVar[dict] = {
        **BaseDetector._parameter_constraints,
        "squeezers": [list, tuple],
        "bit_depth": [Interval(numbers.Integral, 1, None, closed="left")],
        "median_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "value_range": [tuple, list],
    }

    _accepts_sklearn_model = True

    def __init__(
        self,
        model=None,
        *,
        squeezers=_DEFAULT_SQUEEZERS,
        bit_depth=1,
        median_size=2,
        value_range=(0.0, 1.0),
        model_output="auto",
        threshold=None,
        contamination=0.05,
        validation_fraction=None,
        inference_batch_size=None,
        preprocess_fn=None,
        input_shape=None,
        device="cpu",
        random_state=None,
    ):
        self.model = model
        self.squeezers = squeezers
        self.bit_depth = bit_depth
        self.median_size = median_size
        self.value_range = value_range
        self.model_output = model_output
        self.threshold = threshold
        self.contamination = contamination
        self.validation_fraction = validation_fraction
        self.inference_batch_size = inference_batch_size
        self.preprocess_fn = preprocess_fn
        self.input_shape = input_shape
        self.device = device
        self.random_state = random_state

    def _fit_detector(self, X, seed):
        unknown = [name for name in self.squeezers if name not in SQUEEZERS]
        if unknown or not self.squeezers:
            raise ValueError(f"squeezers must be a non-empty list of {list(SQUEEZERS)}; got {list(self.squeezers)}.")
        low, high = self.value_range
        if not high > low:
            raise ValueError(f"value_range must be (low, high) with low < high; got {tuple(self.value_range)}.")
        if "median" in self.squeezers and len(self.input_shape_) < 2:
            raise ValueError(
                f"The 'median' squeezer smooths images, but rows are flat (input_shape_={self.input_shape_}). "
                "Set input_shape to the image shape (C, H, W), e.g. (1, 8, 8) for 8x8 digits, or drop "
                "'median' from squeezers."
            )

    def _squeeze(self, name, x):
        if name == "bit_depth":
            return reduce_bit_depth(x, self.bit_depth, tuple(self.value_range))
        return median_smooth(x, self.median_size)

    def _score_tensor(self, x):
        proba = self._model_log_proba(x).exp()
        distances = [
            (proba - self._model_log_proba(self._squeeze(name, x)).exp()).abs().sum(dim=1) for name in self.squeezers
        ]
        return torch.stack(distances, dim=1).max(dim=1).values

    def _inference_values_per_row(self):
        # The row, each squeezed copy, and the median's unfolded windows.
        windows = self.median_size**2 if "median" in self.squeezers else 0
        return self.n_features_in_ * (1 + len(self.squeezers) + windows)
