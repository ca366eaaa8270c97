"""A per-row loss summarised per bin of classifier confidence, and the VAE calibration analysis built on it."""

from numbers import Integral

import numpy as np
from sklearn.utils import Bunch, column_or_1d
from sklearn.utils.validation import check_is_fitted

from .._core import Interval, StrOptions, validate_params

__all__ = ["calibration_analysis", "loss_by_confidence"]


def _confidence_bins(confidence, n_bins, strategy):
    """Bin edges and each row's bin index."""
    if strategy == "quantile":
        edges = np.quantile(confidence, np.linspace(0, 1, n_bins + 1))
        edges[0], edges[-1] = min(edges[0], 0.0), max(edges[-1], 1.0)
    else:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin i holds edges[i] <= c < edges[i+1]; the last bin includes 1.
    return edges, np.clip(np.searchsorted(edges[1:-1], confidence, side="right"), 0, n_bins - 1)


@validate_params(
    {
        "confidence": ["array-like"],
        "loss": ["array-like"],
        "y_correct": ["array-like", None],
        "n_bins": [Interval(Integral, 1, None, closed="left")],
        "strategy": [StrOptions({"uniform", "quantile"})],
    },
    prefer_skip_nested_validation=True,
)
def loss_by_confidence(confidence, loss, *, y_correct=None, n_bins=10, strategy="uniform"):
    """Mean and spread of a per-row loss (and the accuracy) per classifier-confidence bin.

    Rows are binned by the classifier's confidence (its top probability); per bin
    the mean and standard deviation of ``loss`` are reported, e.g. a VAE's
    reconstruction loss (see :func:`skadv.calibration_analysis`): inputs far from
    the training data, which reconstruct badly, should get low confidence from a
    well-calibrated classifier.

    Parameters
    ----------
    confidence : array-like of shape (n_samples,)
        The classifier's top probability per row, in [0, 1].
    loss : array-like of shape (n_samples,)
        Any per-row quantity to summarise.
    y_correct : array-like of bool of shape (n_samples,), default=None
        Whether the classifier is right on each row; adds the per-bin accuracy.
    n_bins : int, default=10
        Number of bins.
    strategy : {'uniform', 'quantile'}, default='uniform'
        Equal-width bins on [0, 1], or bins holding equal numbers of rows.

    Returns
    -------
    result : sklearn.utils.Bunch
        ``bin_edges`` of shape (n_bins + 1,) (bin ``i`` holds
        ``bin_edges[i] <= confidence < bin_edges[i + 1]``, the last one also its
        right edge), and of shape (n_bins,): ``count``, ``mean_loss``,
        ``std_loss``, ``mean_confidence`` and ``accuracy`` (None without
        ``y_correct``); NaN for empty bins.

    See Also
    --------
    sklearn.calibration.calibration_curve : Accuracy against confidence alone.

    Examples
    --------
    >>> from skadv.metrics import loss_by_confidence
    >>> result = loss_by_confidence([0.3, 0.55, 0.9, 0.95], [0.8, 0.5, 0.1, 0.2], n_bins=2)
    >>> result.count.tolist(), result.mean_loss.round(2).tolist()
    ([1, 3], [0.8, 0.27])
    """
    confidence = column_or_1d(np.asarray(confidence, dtype=float))
    loss = column_or_1d(np.asarray(loss, dtype=float))
    if confidence.shape != loss.shape:
        raise ValueError(f"confidence and loss differ in length: {confidence.shape[0]} != {loss.shape[0]}.")
    edges, bin_index = _confidence_bins(confidence, n_bins, strategy)
    count = np.bincount(bin_index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_loss = np.bincount(bin_index, weights=loss, minlength=n_bins) / count
        mean_square = np.bincount(bin_index, weights=loss**2, minlength=n_bins) / count
        mean_confidence = np.bincount(bin_index, weights=confidence, minlength=n_bins) / count
        accuracy = None
        if y_correct is not None:
            y_correct = column_or_1d(np.asarray(y_correct, dtype=float))
            if y_correct.shape != confidence.shape:
                raise ValueError(
                    f"y_correct and confidence differ in length: {y_correct.shape[0]} != {confidence.shape[0]}."
                )
            accuracy = np.bincount(bin_index, weights=y_correct, minlength=n_bins) / count
    return Bunch(
        bin_edges=edges,
        count=count,
        mean_loss=mean_loss,
        std_loss=np.sqrt(np.maximum(mean_square - mean_loss**2, 0.0)),
        mean_confidence=mean_confidence,
        accuracy=accuracy,
    )


def calibration_analysis(detector, X, y=None, *, n_bins=10, strategy="uniform"):
    """Relate a fitted :class:`~skadv.VAEDetector`'s reconstruction loss to the classifier's confidence.

    Rows are binned by the protected classifier's top probability; the mean VAE
    reconstruction loss (the ``'reconstruction'`` score type) is reported per bin. Inputs
    the VAE reconstructs badly — far from the training data — should get low
    confidence from a well-calibrated classifier; high-confidence bins with large
    reconstruction loss point to overconfidence off the data manifold.

    Parameters
    ----------
    detector : fitted VAEDetector
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,), default=None
        True labels; adds the classifier's accuracy per bin.
    n_bins : int, default=10
    strategy : {'uniform', 'quantile'}, default='uniform'
        Equal-width confidence bins on [0, 1], or bins holding equal numbers of rows.

    Returns
    -------
    result : sklearn.utils.Bunch
        ``bin_edges`` (n_bins + 1,), and per bin ``count``, ``mean_loss``, ``std_loss``,
        ``mean_confidence`` and ``accuracy`` (None without ``y``) — NaN for empty bins —
        plus the per-row ``confidence`` and ``reconstruction_loss``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skadv import VAEDetector, calibration_analysis
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16.0
    >>> clf = LogisticRegression(max_iter=500).fit(X, y)
    >>> det = VAEDetector(clf, epochs=5, random_state=0).fit(X)
    >>> result = calibration_analysis(det, X, y, n_bins=5)
    >>> result.mean_loss.shape, int(result.count.sum())
    ((5,), 1797)
    """
    check_is_fitted(detector)
    parts = detector.confidence_and_reconstruction_loss(X)
    y_correct = None
    if y is not None:
        y = column_or_1d(np.asarray(y))
        if y.shape[0] != parts.predicted.shape[0]:
            raise ValueError(f"X has {parts.predicted.shape[0]} rows but y has {y.shape[0]}.")
        y_correct = parts.predicted == y
    confidence, loss = parts.confidence, parts.reconstruction_loss
    binned = loss_by_confidence(confidence, loss, y_correct=y_correct, n_bins=n_bins, strategy=strategy)
    return Bunch(**binned, confidence=confidence, reconstruction_loss=loss)
