"""Metrics for evaluating adversarial-example detectors honestly.

Detection (AUROC, TPR at a fixed threshold or a fixed FPR) on every detector's
adversarial score, accuracy with rejection and evasion rate, the deployed
decision of any defended classifier, security evaluation curves (accuracy,
detection and evasion versus the attack budget, with attack-failure checks), a
scorer that attacks each fold for ``GridSearchCV``, harmful-vs-harmless labels and
a score drift test for corruptions, and a per-row loss binned by classifier
confidence.

Thresholds: a detector's ``contamination`` sets its threshold in-sample (on the
rows it was fitted on), which flags more than that share of new clean rows. Fix
thresholds on held-out clean rows with ``infer_threshold`` before evaluating.
"""

from ._calibration import calibration_analysis, loss_by_confidence
from ._detection import (
    accuracy_with_rejection,
    clean_vs_attacked,
    detection_auroc,
    evasion_rate,
    tpr_at_fpr,
    tpr_at_threshold,
)
from ._harm import harmfulness, ks_drift_test
from ._scores import adversarial_scores, detection_threshold
from ._security import deployed_predictions, make_attack_scorer, security_evaluation

__all__ = [
    "accuracy_with_rejection",
    "adversarial_scores",
    "calibration_analysis",
    "clean_vs_attacked",
    "deployed_predictions",
    "detection_auroc",
    "detection_threshold",
    "evasion_rate",
    "harmfulness",
    "ks_drift_test",
    "loss_by_confidence",
    "make_attack_scorer",
    "security_evaluation",
    "tpr_at_fpr",
    "tpr_at_threshold",
]
