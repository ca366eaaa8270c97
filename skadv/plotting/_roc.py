"""ROC curve of clean-vs-attacked detection, drawn by scikit-learn's RocCurveDisplay."""

from sklearn.metrics import RocCurveDisplay

from ..metrics import adversarial_scores, clean_vs_attacked


def plot_detection_roc(
    estimator=None,
    X_clean=None,
    X_attacked=None,
    *,
    scores_clean=None,
    scores_attacked=None,
    name=None,
    ax=None,
    **kwargs,
):
    """ROC curve of clean-vs-attacked detection, drawn by sklearn's RocCurveDisplay.

    Pass a fitted detector with clean and attacked inputs, or the two score
    arrays directly. Attacked inputs are the positives.

    Parameters
    ----------
    estimator : fitted skadv detector, default=None
    X_clean, X_attacked : array-like, default=None
        Inputs to score with ``estimator`` (:func:`~skadv.metrics.adversarial_scores`).
    scores_clean, scores_attacked : array-like, default=None
        Adversarial scores, used when ``estimator`` is None.
    name : str, default=None
        Legend name.
    ax : matplotlib Axes, default=None
    **kwargs : dict
        Passed to :meth:`sklearn.metrics.RocCurveDisplay.from_predictions`.

    Returns
    -------
    display : sklearn.metrics.RocCurveDisplay

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skadv.plotting import plot_detection_roc
    >>> disp = plot_detection_roc(scores_clean=[0.1, 0.2, 0.3], scores_attacked=[0.25, 0.9])
    >>> round(disp.roc_auc, 3)
    0.833
    """
    if estimator is not None:
        if X_clean is None or X_attacked is None:
            raise ValueError("With an estimator, pass X_clean and X_attacked.")
        scores_clean = adversarial_scores(estimator, X_clean)
        scores_attacked = adversarial_scores(estimator, X_attacked)
        name = name or type(estimator).__name__
    elif scores_clean is None or scores_attacked is None:
        raise ValueError("Pass an estimator with X_clean and X_attacked, or scores_clean and scores_attacked.")
    y_true, y_score = clean_vs_attacked(scores_clean, scores_attacked)
    return RocCurveDisplay.from_predictions(y_true, y_score, pos_label=1, name=name, ax=ax, **kwargs)
