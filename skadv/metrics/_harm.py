"""Harmful vs harmless inputs, and a batch-level drift test on detector scores."""

from numbers import Real

import numpy as np
from scipy import stats
from sklearn.utils import Bunch, column_or_1d

from .._core import Interval, validate_params

__all__ = ["harmfulness", "ks_drift_test"]


@validate_params(
    {"y_true": ["array-like"], "y_pred_clean": ["array-like"], "y_pred_corrupted": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def harmfulness(y_true, y_pred_clean, y_pred_corrupted):
    """Label each corrupted input harmful or harmless.

    A *harmful* input is one the model classifies correctly clean and wrongly once
    corrupted; a *harmless* one stays correct. Inputs already misclassified clean are
    neither.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_pred_clean : array-like of shape (n_samples,)
        The model's predictions on the clean inputs.
    y_pred_corrupted : array-like of shape (n_samples,)
        Its predictions on the corrupted inputs.

    Returns
    -------
    result : sklearn.utils.Bunch
        ``harmful`` and ``harmless`` boolean masks.

    See Also
    --------
    ks_drift_test : Whether a batch of detector scores has drifted.

    Examples
    --------
    >>> from skadv.metrics import harmfulness
    >>> r = harmfulness([0, 1, 2], [0, 1, 0], [1, 1, 2])
    >>> r.harmful.tolist(), r.harmless.tolist()
    ([True, False, False], [False, True, False])
    """
    y_true, y_pred_clean, y_pred_corrupted = (
        column_or_1d(a) for a in (y_true, y_pred_clean, y_pred_corrupted)
    )
    if not len(y_true) == len(y_pred_clean) == len(y_pred_corrupted):
        raise ValueError(
            "y_true, y_pred_clean and y_pred_corrupted must have the same length, got "
            f"{len(y_true)}, {len(y_pred_clean)} and {len(y_pred_corrupted)}."
        )
    right_clean = y_pred_clean == y_true
    right_corrupted = y_pred_corrupted == y_true
    return Bunch(harmful=right_clean & ~right_corrupted, harmless=right_clean & right_corrupted)


@validate_params(
    {
        "reference_scores": ["array-like"],
        "scores": ["array-like"],
        "p_val": [Interval(Real, 0, 1, closed="neither")],
    },
    prefer_skip_nested_validation=True,
)
def ks_drift_test(reference_scores, scores, p_val=0.05):
    """Two-sample Kolmogorov–Smirnov test of a batch of detector scores against a reference batch.

    Parameters
    ----------
    reference_scores : array-like of shape (n_reference,)
        Scores of clean data (e.g. ``det.adversarial_score(X_clean)``).
    scores : array-like of shape (n_samples,)
        Scores of the batch under test.
    p_val : float in (0, 1), default=0.05
        Significance level.

    Returns
    -------
    result : sklearn.utils.Bunch
        ``is_drift`` (bool), ``p_value``, ``statistic`` (KS distance), ``threshold`` (= p_val).

    See Also
    --------
    scipy.stats.ks_2samp : The test underneath.

    Examples
    --------
    >>> import numpy as np
    >>> from skadv.metrics import ks_drift_test
    >>> rng = np.random.RandomState(0)
    >>> ks_drift_test(rng.normal(size=500), rng.normal(1.0, size=500)).is_drift
    True
    """
    reference_scores = column_or_1d(reference_scores).astype(np.float64)
    scores = column_or_1d(scores).astype(np.float64)
    for name, values in (("reference_scores", reference_scores), ("scores", scores)):
        if values.size == 0:
            raise ValueError(f"{name} is empty.")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} contains NaN or infinity.")
    result = stats.ks_2samp(reference_scores, scores)
    return Bunch(
        is_drift=bool(result.pvalue < p_val),
        p_value=float(result.pvalue),
        statistic=float(result.statistic),
        threshold=p_val,
    )
