"""Detection and rejection metrics on top of scikit-learn's."""

from numbers import Real

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.utils.validation import check_consistent_length, column_or_1d

from .._core import Interval, validate_params

__all__ = [
    "accuracy_with_rejection",
    "clean_vs_attacked",
    "detection_auroc",
    "evasion_rate",
    "tpr_at_fpr",
    "tpr_at_threshold",
]


@validate_params(
    {"scores_clean": ["array-like"], "scores_attacked": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def clean_vs_attacked(scores_clean, scores_attacked):
    """Clean and attacked scores as one binary problem for scikit-learn's ranking tools.

    Parameters
    ----------
    scores_clean : array-like of shape (n_clean,)
        Adversarial scores (higher = more adversarial) of clean inputs.
    scores_attacked : array-like of shape (n_attacked,)
        Adversarial scores of attacked inputs.

    Returns
    -------
    y_true : ndarray of int of shape (n_clean + n_attacked,)
        0 for the clean inputs, then 1 (the positives) for the attacked ones.
    y_score : ndarray of float64 of shape (n_clean + n_attacked,)
        The scores in the same order.

    See Also
    --------
    detection_auroc : ROC AUC of this problem.

    Examples
    --------
    >>> from sklearn.metrics import average_precision_score
    >>> from skadv.metrics import clean_vs_attacked
    >>> y_true, y_score = clean_vs_attacked([0.1, 0.2, 0.3], [0.25, 0.9])
    >>> y_true.tolist()
    [0, 0, 0, 1, 1]
    >>> round(average_precision_score(y_true, y_score), 3)
    0.833
    """
    scores_clean = column_or_1d(np.asarray(scores_clean, dtype=np.float64))
    scores_attacked = column_or_1d(np.asarray(scores_attacked, dtype=np.float64))
    if scores_clean.size == 0 or scores_attacked.size == 0:
        raise ValueError(
            "Both scores_clean and scores_attacked need at least one score; got "
            f"{scores_clean.size} and {scores_attacked.size}."
        )
    if not (np.all(np.isfinite(scores_clean)) and np.all(np.isfinite(scores_attacked))):
        raise ValueError("Scores must be finite (no NaN or infinity).")
    y_true = np.r_[np.zeros(scores_clean.size, dtype=int), np.ones(scores_attacked.size, dtype=int)]
    return y_true, np.r_[scores_clean, scores_attacked]


@validate_params(
    {"scores_clean": ["array-like"], "scores_attacked": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def detection_auroc(scores_clean, scores_attacked):
    """Area under the ROC curve of a detector separating attacked from clean inputs.

    Parameters
    ----------
    scores_clean : array-like of shape (n_clean,)
        Adversarial scores (higher = more adversarial, e.g. a skadv
        detector's ``adversarial_score``) of clean inputs: the negatives.
    scores_attacked : array-like of shape (n_attacked,)
        Adversarial scores of attacked inputs: the positives. Pass all
        attacked inputs, or only the successful ones, and say which.

    Returns
    -------
    auroc : float
        1.0 for perfect separation, 0.5 for chance.

    See Also
    --------
    tpr_at_fpr : Detection rate at a fixed false-positive rate.
    sklearn.metrics.roc_auc_score : The computation underneath.

    Examples
    --------
    >>> from skadv.metrics import detection_auroc
    >>> round(detection_auroc([0.1, 0.2, 0.3], [0.25, 0.9]), 3)
    0.833
    """
    return float(roc_auc_score(*clean_vs_attacked(scores_clean, scores_attacked)))


@validate_params(
    {
        "scores_clean": ["array-like"],
        "scores_attacked": ["array-like"],
        "fpr": [Interval(Real, 0, 1, closed="both")],
    },
    prefer_skip_nested_validation=True,
)
def tpr_at_fpr(scores_clean, scores_attacked, fpr=0.05):
    """Detection rate (true-positive rate) at a given false-positive rate.

    The largest share of attacked inputs flagged by a threshold on the
    adversarial score that flags at most ``fpr`` of the clean inputs,
    read off :func:`sklearn.metrics.roc_curve`. The threshold is chosen
    *after* seeing the scores being evaluated: to report a deployed
    detector, whose threshold was fixed on held-out clean rows (and which
    an adaptive attack targeted), use :func:`tpr_at_threshold`.

    Parameters
    ----------
    scores_clean : array-like of shape (n_clean,)
        Adversarial scores of clean inputs (higher = more adversarial).
    scores_attacked : array-like of shape (n_attacked,)
        Adversarial scores of attacked inputs.
    fpr : float in [0, 1], default=0.05
        Largest allowed false-positive rate on clean inputs.

    Returns
    -------
    tpr : float
        True-positive rate in [0, 1].

    See Also
    --------
    detection_auroc : Threshold-free summary of the same ROC curve.
    tpr_at_threshold : Detection rate at a threshold fixed beforehand.

    Examples
    --------
    >>> from skadv.metrics import tpr_at_fpr
    >>> clean = [0.1, 0.2, 0.3, 0.4]
    >>> attacked = [0.35, 0.5, 0.6, 0.05]
    >>> tpr_at_fpr(clean, attacked, fpr=0.0)
    0.5
    >>> tpr_at_fpr(clean, attacked, fpr=0.25)
    0.75
    """
    y_true, y_score = clean_vs_attacked(scores_clean, scores_attacked)
    fprs, tprs, _ = roc_curve(y_true, y_score, drop_intermediate=False)
    # roc_curve's first point (threshold=inf) has fpr=0, so the mask is never empty.
    return float(tprs[fprs <= fpr + 1e-12].max())


@validate_params(
    {"scores_attacked": ["array-like"], "threshold": [Real]},
    prefer_skip_nested_validation=True,
)
def tpr_at_threshold(scores_attacked, threshold):
    """Detection rate (true-positive rate) at a fixed threshold.

    The share of attacked inputs whose adversarial score exceeds
    ``threshold``: what a deployed detector flags. Fix the threshold on
    held-out clean rows first (``detector.infer_threshold(X_val, 95)``,
    then :func:`detection_threshold`); unlike :func:`tpr_at_fpr` the
    threshold does not depend on the scores evaluated, and it is the one an
    adaptive attack targeted.

    Parameters
    ----------
    scores_attacked : array-like of shape (n_attacked,)
        Adversarial scores (higher = more adversarial) of attacked inputs.
        For an adaptive attack pass only the successful examples' scores
        (those that fool the classifier), and say so.
    threshold : float
        Rows scoring strictly above it are flagged (as the detectors' ``predict``).

    Returns
    -------
    tpr : float
        True-positive rate in [0, 1].

    See Also
    --------
    detection_threshold : The threshold of a fitted detector on this scale.
    tpr_at_fpr : The best rate over thresholds read off the ROC curve.

    Examples
    --------
    >>> from skadv.metrics import tpr_at_threshold
    >>> tpr_at_threshold([0.35, 0.5, 0.6, 0.05], threshold=0.4)
    0.5
    """
    scores_attacked = column_or_1d(np.asarray(scores_attacked, dtype=np.float64))
    if scores_attacked.size == 0:
        raise ValueError("scores_attacked needs at least one score.")
    if np.any(np.isnan(scores_attacked)):
        raise ValueError("scores_attacked must not contain NaN.")
    return float(np.mean(scores_attacked > threshold))


@validate_params(
    {
        "y_true": ["array-like"],
        "y_pred": ["array-like"],
        "rejected": ["array-like", None],
        "reject_label": "no_validation",
        "sample_weight": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def evasion_rate(y_true, y_pred, *, rejected=None, reject_label=-1, sample_weight=None):
    """Share of attacked inputs that evade the defended system: misclassified and not flagged.

    The headline metric of a security evaluation at a fixed threshold (the
    attacker's success; lower is better). Rejecting everything drives it to
    0, so always report it next to the clean cost, the clean
    :func:`accuracy_with_rejection` at the same threshold.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels of the attacked inputs (``reject_label`` marks
        rejected ones when ``rejected`` is None).
    rejected : array-like of bool of shape (n_samples,), default=None
        Which inputs the detector flags; None derives it from ``y_pred == reject_label``.
    reject_label : object, default=-1
        Label in ``y_pred`` that means "rejected".
    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights.

    Returns
    -------
    rate : float

    See Also
    --------
    accuracy_with_rejection : With ``attacked=True`` it equals ``1 - evasion_rate``.

    Examples
    --------
    >>> from skadv.metrics import evasion_rate
    >>> evasion_rate([0, 1, 1, 2], [0, -1, 2, 1])
    0.5
    """
    return 1.0 - accuracy_with_rejection(
        y_true, y_pred, rejected=rejected, attacked=True, reject_label=reject_label, sample_weight=sample_weight
    )


@validate_params(
    {
        "y_true": ["array-like"],
        "y_pred": ["array-like"],
        "rejected": ["array-like", None],
        "attacked": ["array-like", "boolean"],
        "reject_label": "no_validation",
        "sample_weight": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def accuracy_with_rejection(
    y_true, y_pred, *, rejected=None, attacked=False, reject_label=-1, sample_weight=None
):
    """Accuracy of a classifier protected by a detector or a reject option.

    A clean input counts as correct only if it is accepted and classified
    correctly (rejecting a clean input is an error). An attacked input
    counts as defended if it is rejected / flagged, or accepted and
    classified correctly.

    With ``attacked=True`` alone it is ``1 -`` :func:`evasion_rate`, which a
    detector that rejects everything maximises (1.0). Report it next to the
    clean value, or score clean and attacked inputs together (``attacked``
    as a per-row mask): then rejecting everything scores at most the share
    of attacked rows.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels; ``reject_label`` marks rejected inputs when
        ``rejected`` is None (DeepNeuralRejection's convention).
    rejected : array-like of bool of shape (n_samples,), default=None
        Which inputs the detector flags (e.g. ``detector.predict(X) == -1``).
        None derives it from ``y_pred == reject_label``.
    attacked : bool or array-like of bool of shape (n_samples,), default=False
        Whether the inputs (all, or each one) are attacked.
    reject_label : object, default=-1
        Label in ``y_pred`` that means "rejected".
    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights.

    Returns
    -------
    accuracy : float

    Examples
    --------
    >>> from skadv.metrics import accuracy_with_rejection
    >>> y_true = [0, 1, 1, 2]
    >>> y_pred = [0, -1, 2, 2]
    >>> accuracy_with_rejection(y_true, y_pred)  # clean: a rejection is an error
    0.5
    >>> accuracy_with_rejection(y_true, y_pred, attacked=True)  # attacked: it defends
    0.75
    >>> # Clean and attacked copies together: rejecting everything scores 0.5, not 1.
    >>> accuracy_with_rejection(y_true * 2, [-1] * 8, attacked=[False] * 4 + [True] * 4)
    0.5
    """
    y_true = column_or_1d(y_true)
    y_pred = column_or_1d(y_pred)
    check_consistent_length(y_true, y_pred, sample_weight)
    if rejected is None:
        rejected = y_pred == reject_label
    else:
        rejected = column_or_1d(rejected).astype(bool)
        check_consistent_length(y_true, rejected)
    attacked = np.broadcast_to(np.asarray(attacked, dtype=bool), y_true.shape)
    accepted_correct = (y_pred == y_true) & ~rejected
    defended = np.where(attacked, rejected | accepted_correct, accepted_correct)
    return float(np.average(defended, weights=sample_weight))
