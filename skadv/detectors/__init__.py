"""Adversarial-example detectors: one module per detector.

The trained detectors (:class:`AdversarialAEDetector`, :class:`VAEDetector`,
:class:`ModelDistillationDetector`) learn a model of clean data; the baselines
(:class:`ConfidenceDetector`, :class:`MahalanobisDetector`,
:class:`FeatureSqueezingDetector`) score with the protected classifier alone.
All subclass :class:`skadv.base.BaseDetector`.
"""

from ._adversarial_ae import AdversarialAEDetector
from ._confidence import ConfidenceDetector
from ._distillation import ModelDistillationDetector
from ._mahalanobis import MahalanobisDetector
from ._squeezing import FeatureSqueezingDetector
from ._vae import VAEDetector

__all__ = [
    "AdversarialAEDetector",
    "ConfidenceDetector",
    "FeatureSqueezingDetector",
    "MahalanobisDetector",
    "ModelDistillationDetector",
    "VAEDetector",
]
