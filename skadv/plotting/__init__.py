"""Matplotlib displays for evaluating detectors under attack.

In scikit-learn's ``*Display`` style: build from data with ``from_estimator``
/ ``from_predictions`` (or the keyword-only constructor), draw with
``.plot(ax=...)``; the display keeps ``ax_`` (or ``axes_``), ``figure_`` and
the drawn artists. ROC curves of clean-vs-attacked detection reuse
:class:`sklearn.metrics.RocCurveDisplay` through :func:`plot_detection_roc`.
"""

from ._attack_trace import AttackTraceDisplay
from ._distinct_labels import DistinctLabelsDisplay
from ._reconstruction_calibration import ReconstructionCalibrationDisplay
from ._roc import plot_detection_roc
from ._score_histogram import ScoreHistogramDisplay
from ._security_evaluation import SecurityEvaluationDisplay

__all__ = [
    "AttackTraceDisplay",
    "DistinctLabelsDisplay",
    "ReconstructionCalibrationDisplay",
    "ScoreHistogramDisplay",
    "SecurityEvaluationDisplay",
    "plot_detection_roc",
]
