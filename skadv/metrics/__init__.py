"""Metrics for evaluating adversarial-example detectors honestly.

Detection (AUROC, TPR at a fixed FPR), accuracy with rejection, security
evaluation curves (accuracy and detection versus the attack budget) and a
scorer that attacks each fold for ``GridSearchCV``.
"""

from ._detection import accuracy_with_rejection, detection_auroc, tpr_at_fpr
from ._security import make_attack_scorer, security_evaluation

__all__ = [
    "accuracy_with_rejection",
    "detection_auroc",
    "make_attack_scorer",
    "security_evaluation",
    "tpr_at_fpr",
]
