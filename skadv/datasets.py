"""Image data sets built from data that ships with scikit-learn (no download), and a classifier for them.

:func:`load_digits8` gives scikit-learn's 1797 real 8x8 digits as float32 rows in
[0, 1], the workload of the demo and the examples. :func:`make_digits_classifier`
trains a small CNN (:class:`DigitsCNN`) on such rows through skorch, in-process and
deterministically: the protected model the detectors are fitted next to.

:func:`load_digits28` turns scikit-learn's 1797 real 8x8 digits into as many 28x28
"MNIST-like" rows as needed: each digit is upscaled to 20x20, padded to 28x28 (MNIST's
framing), moved by a small random rotation and shift, and given pixel noise. It is the
workload at the scale of the published detectors' experiments (e.g. the CNN of Deep
Neural Rejection, whose hidden layers then have 18432/6400/4096 features).

Examples
--------
>>> from skadv.datasets import load_digits8, load_digits28
>>> load_digits8()[0].shape
(1797, 64)
>>> X, y = load_digits28(n_samples=5, random_state=0)
>>> X.shape, X.dtype.name, y.shape
((5, 784), 'float32', (5,))
>>> bool(X.min() >= 0.0 and X.max() <= 1.0)
True
"""

import math
import numbers

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from torch import nn
from torch.nn import functional as F

from ._core import Interval, validate_params

__all__ = ["DigitsCNN", "load_digits8", "load_digits28", "make_digits_classifier"]

# Rows generated per torch pass: bounds the memory of the (n, 1, 28, 28) temporaries.
_CHUNK_ROWS = 4096


@validate_params(
    {
        "test_size": [
            Interval(numbers.Real, 0, 1, closed="neither"),
            Interval(numbers.Integral, 10, None, closed="left"),
            None,
        ],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def load_digits8(*, test_size=None, random_state=None):
    """scikit-learn's 8x8 digit images as float32 rows in [0, 1], optionally split.

    The 1797 digits of :func:`sklearn.datasets.load_digits` (grey levels 0-16)
    divided by 16, so that an attack's ``clip_values=(0, 1)`` box and budgets
    such as ``eps=0.1`` mean the same as on MNIST.

    Parameters
    ----------
    test_size : float or int, default=None
        None returns all rows. A share in (0, 1) or a number of rows (at
        least 10, one per class) returns a stratified
        :func:`~sklearn.model_selection.train_test_split` instead.
    random_state : int, RandomState instance or None, default=None
        Seeds the split.

    Returns
    -------
    X, y : ndarray of shape (1797, 64), float32, and ndarray of shape (1797,), int64
        When ``test_size`` is None. Reshape X to ``(-1, 1, 8, 8)`` for images.
    X_train, X_test, y_train, y_test : ndarrays
        When ``test_size`` is given.

    See Also
    --------
    load_digits28 : The same digits upscaled to 28x28, as many rows as needed.

    Examples
    --------
    >>> from skadv.datasets import load_digits8
    >>> X, y = load_digits8()
    >>> X.shape, X.dtype.name, float(X.max())
    ((1797, 64), 'float32', 1.0)
    >>> X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=0)
    >>> len(X_train), len(X_test)
    (1257, 540)
    """
    X, y = load_digits(return_X_y=True)
    X, y = (X / 16.0).astype(np.float32), y.astype(np.int64)
    if test_size is None:
        return X, y
    return train_test_split(X, y, test_size=test_size, stratify=y, random_state=random_state)


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
    cos = torch.as_tensor(np.cos(angles), dtype=torch.float32)
    sin = torch.as_tensor(np.sin(angles), dtype=torch.float32)
    theta = torch.stack(
        [
            torch.stack([cos, -sin, torch.as_tensor(shifts[:, 0], dtype=torch.float32)], 1),
            torch.stack([sin, cos, torch.as_tensor(shifts[:, 1], dtype=torch.float32)], 1),
        ],
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


class DigitsCNN(nn.Module):
    """Small CNN for square grey digit images: conv(16) → conv(32) → max-pool → linear(64) → logits.

    Takes images ``(n, 1, image_size, image_size)`` or the same images as rows
    ``(n, image_size ** 2)`` (reshaped inside), so that one module serves a
    skorch net fed with rows and detectors fed with ``input_shape=(1, 8, 8)``.

    Parameters
    ----------
    n_classes : int, default=10
        Number of logits.
    image_size : int, default=8
        Side of the images (even: one 2x2 max-pool halves it); 28 for
        :func:`load_digits28`.

    Examples
    --------
    >>> import torch
    >>> from skadv.datasets import DigitsCNN
    >>> cnn = DigitsCNN()
    >>> cnn(torch.zeros(3, 64)).shape, cnn(torch.zeros(3, 1, 8, 8)).shape
    (torch.Size([3, 10]), torch.Size([3, 10]))
    """

    def __init__(self, n_classes=10, image_size=8):
        super().__init__()
        if image_size < 2 or image_size % 2:
            raise ValueError(f"image_size must be an even number of pixels >= 2; got {image_size}.")
        self.image_size = image_size
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        pooled = image_size // 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * pooled * pooled, 64), nn.ReLU(), nn.Linear(64, n_classes)
        )

    def forward(self, x):
        if x.ndim == 2:
            x = x.reshape(-1, 1, self.image_size, self.image_size)
        return self.classifier(self.features(x))


@validate_params(
    {
        "X": ["array-like"],
        "y": ["array-like"],
        "epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "module": [nn.Module, None],
    },
    prefer_skip_nested_validation=True,
)
def make_digits_classifier(
    X, y, *, epochs=25, lr=2e-3, batch_size=64, random_state=None, verbose=False, module=None
):
    """A :class:`DigitsCNN` (or another module) trained on digit images through skorch: the model to protect.

    Adam on the cross-entropy, shuffled mini-batches, no validation split.
    Training runs under :func:`torch.random.fork_rng` seeded from
    ``random_state`` (weight initialisation and shuffling), so the same
    ``random_state`` gives the same weights and the global torch generator is
    left as it was.

    Parameters
    ----------
    X : array-like of shape (n_samples, side * side) or (n_samples, 1, side, side)
        Square grey images in [0, 1], e.g. from :func:`load_digits8` (side 8)
        or :func:`load_digits28` (side 28).
    y : array-like of shape (n_samples,)
        Integer class labels.
    epochs : int, default=25
        Passes over the data.
    lr : float, default=2e-3
        Adam's learning rate.
    batch_size : int, default=64
        Rows per mini-batch.
    random_state : int, RandomState instance or None, default=None
        Seeds the training. Pass an int for reproducible weights.
    verbose : bool, default=False
        Print skorch's table of epochs (without colour codes when the output
        is not a terminal).
    module : torch.nn.Module, default=None
        The network to train, returning logits for rows (e.g. an MLP behind
        ``nn.Flatten()``, which takes images too); trained in place. None: a
        new :class:`DigitsCNN` for the images' side.

    Returns
    -------
    net : skorch.NeuralNetClassifier
        Fitted; ``net.predict``/``net.predict_proba`` take rows or images,
        ``net.module_`` is the :class:`DigitsCNN` (in eval mode), which the
        detectors protect (with ``input_shape=(1, side, side)``).

    Examples
    --------
    >>> from skadv.datasets import load_digits8, make_digits_classifier
    >>> X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=0)
    >>> net = make_digits_classifier(X_train, y_train, epochs=5, random_state=0)
    >>> bool((net.predict(X_test) == y_test).mean() > 0.8)
    True
    """
    from skorch import NeuralNetClassifier

    from ._core import EpochLog

    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y).astype(np.int64)
    n_pixels = int(np.prod(X.shape[1:])) if X.ndim >= 2 else 0
    side = math.isqrt(n_pixels)
    if n_pixels == 0 or side * side != n_pixels:
        raise ValueError(
            f"X must hold square grey images, as rows of side * side values or as (n, 1, side, side); "
            f"got shape {X.shape}."
        )
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    architecture = (
        {"module": DigitsCNN, "module__n_classes": int(y.max()) + 1, "module__image_size": side}
        if module is None else {"module": module}
    )
    net = NeuralNetClassifier(
        **architecture,
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=lr,
        max_epochs=epochs,
        batch_size=batch_size,
        train_split=None,
        iterator_train__shuffle=True,
        # Replaced only when printing: a quiet net keeps skorch's own callbacks (and trusted types).
        **({"callbacks__print_log": EpochLog} if verbose else {}),
        verbose=int(verbose),
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net.fit(X, y)
    net.module_.eval()
    return net
