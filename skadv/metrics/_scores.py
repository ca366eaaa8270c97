"""Every skadv detector's score and threshold on one scale: higher = more adversarial."""

import numpy as np
from sklearn.base import is_classifier
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from .._core import HasMethods, validate_params

__all__ = ["adversarial_scores", "detection_threshold"]


@validate_params(
    {
        "estimator": [HasMethods(["adversarial_score"]), HasMethods(["score_samples"])],
        "X": ["array-like"],
    },
    prefer_skip_nested_validation=True,
)
def adversarial_scores(estimator, X):
    """Adversarial score of each row (higher = more adversarial) from any skadv detector.

    The detector's ``adversarial_score`` where it has one, else minus its
    ``score_samples`` (e.g. :class:`~skadv.DeepNeuralRejection`, whose
    ``score_samples`` is the highest class score, and
    :class:`~skadv.DNRDetector`). The scale of :func:`detection_auroc` and of
    :func:`detection_threshold`.

    Parameters
    ----------
    estimator : fitted skadv detector, DeepNeuralRejection or Pipeline ending in one
    X : array-like of shape (n_samples, n_features)

    Returns
    -------
    scores : ndarray of float64 of shape (n_samples,)

    See Also
    --------
    detection_threshold : The threshold on these scores above which rows are flagged.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skadv import ModelDistillationDetector
    >>> from skadv.metrics import adversarial_scores, detection_threshold
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16.0
    >>> clf = LogisticRegression(max_iter=500).fit(X, y)
    >>> det = ModelDistillationDetector(clf, epochs=2, random_state=0).fit(X)
    >>> scores = adversarial_scores(det, X[:100])
    >>> bool(((scores > detection_threshold(det)) == (det.predict(X[:100]) == -1)).all())
    True
    """
    if hasattr(estimator, "adversarial_score"):
        return np.asarray(estimator.adversarial_score(X), dtype=np.float64)
    return -np.asarray(estimator.score_samples(X), dtype=np.float64)


@validate_params({"estimator": "no_validation"}, prefer_skip_nested_validation=True)
def detection_threshold(estimator):
    """The threshold on :func:`adversarial_scores` above which ``estimator`` flags a row.

    One scale for every detector: an outlier detector (each skadv detector,
    :class:`~skadv.DNRDetector`) flags rows whose ``score_samples`` is below
    ``offset_``, i.e. whose adversarial score is above ``-offset_``;
    :class:`~skadv.DeepNeuralRejection` rejects rows whose highest class score
    is below its ``threshold``, i.e. whose adversarial score is above
    ``-threshold``. (The detectors' ``threshold_`` is already on the adversarial
    scale; DeepNeuralRejection's ``threshold`` is on the class-score scale, the
    opposite sign.)

    Parameters
    ----------
    estimator : fitted skadv detector, DeepNeuralRejection or Pipeline ending in one

    Returns
    -------
    threshold : float or None
        None when the estimator flags nothing by a threshold (a
        DeepNeuralRejection without ``threshold``) or is no detector.

    See Also
    --------
    adversarial_scores : The scores this threshold applies to.

    Examples
    --------
    >>> from torch import nn
    >>> from sklearn.datasets import load_digits
    >>> from skadv import DeepNeuralRejection
    >>> from skadv.metrics import adversarial_scores, detection_threshold
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16.0
    >>> net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    >>> dnr = DeepNeuralRejection(net, layers=["1"], cv=3, random_state=0).fit(X[:300], y[:300])
    >>> dnr = dnr.set_params(threshold=dnr.compute_threshold(X[300:400], 0.1))
    >>> detection_threshold(dnr) == -dnr.threshold
    True
    >>> rejected = adversarial_scores(dnr, X[300:400]) > detection_threshold(dnr)
    >>> bool((rejected == (dnr.predict(X[300:400]) == -1)).all())
    True
    """
    if isinstance(estimator, Pipeline):
        # The Pipeline's score_samples is its last step's: so is the threshold.
        estimator = estimator[-1]
    check_is_fitted(estimator)
    if hasattr(estimator, "offset_"):
        threshold = -float(estimator.offset_)
    elif is_classifier(estimator) and getattr(estimator, "threshold", None) is not None:
        threshold = -float(estimator.threshold)
    else:
        return None
    return threshold if np.isfinite(threshold) else None
