"""Metrics for evaluating adversarial-example detectors honestly.

Detection (AUROC, TPR at a fixed FPR) on every detector's adversarial score,
accuracy with rejection, security evaluation curves (accuracy and detection
versus the attack budget), a scorer that attacks each fold for
``GridSearchCV``, harmful-vs-harmless labels and a score drift test for
corruptions, and a per-row loss binned by classifier confidence.
"""

from ._calibration import loss_by_confidence
from ._detection import (
    accuracy_with_rejection,
    clean_vs_attacked,
    detection_auroc,
    tpr_at_fpr,
)
from ._harm import harmfulness, ks_drift_test
from ._scores import adversarial_scores, detection_threshold
from ._security import make_attack_scorer, security_evaluation

__all__ = [
    "accuracy_with_rejection",
    "adversarial_scores",
    "clean_vs_attacked",
    "detection_auroc",
    "detection_threshold",
    "harmfulness",
    "ks_drift_test",
    "loss_by_confidence",
    "make_attack_scorer",
    "security_evaluation",
    "tpr_at_fpr",
]
