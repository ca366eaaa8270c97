"""skadv: scikit-learn-compatible adversarial-example detectors backed by PyTorch."""

import warnings

from . import compat, corruptions, datasets, utils
from ._adversarial_ae import AdversarialAEDetector
from ._base import BaseDetector, InconsistentVersionWarning
from ._confidence import ConfidenceDetector
from ._distillation import ModelDistillationDetector
from ._dnr import DeepNeuralRejection, DNRDetector
from ._kernel_svm import NystroemOneVsAll, OneVsAllSVC
from ._mahalanobis import MahalanobisDetector
from ._model import ProtectedModel
from ._squeezing import FeatureSqueezingDetector
from ._vae import VAEDetector, calibration_analysis
from ._version import __version__

__all__ = [
    "AdversarialAEDetector",
    "BaseDetector",
    "ConfidenceDetector",
    "DNRDetector",
    "DeepNeuralRejection",
    "FeatureSqueezingDetector",
    "InconsistentVersionWarning",
    "MahalanobisDetector",
    "ModelDistillationDetector",
    "NystroemOneVsAll",
    "OneVsAllSVC",
    "ProtectedModel",
    "VAEDetector",
    "__version__",
    "attacks",
    "calibration_analysis",
    "compat",
    "corruptions",
    "datasets",
    "metrics",
    "plotting",
    "utils",
]

# Submodules importing the estimators above.
from . import (
    attacks,
    metrics,
    plotting,
)

# Names that moved: still importable from here, with a DeprecationWarning.
_MOVED = {
    "DistinctLabelsDisplay": "plotting",
    "ReconstructionCalibrationDisplay": "plotting",
    "harmfulness": "metrics",
    "ks_drift_test": "metrics",
}


def __getattr__(name):
    if name in _MOVED:
        package = _MOVED[name]
        warnings.warn(
            f"skadv.{name} moved to skadv.{package}.{name}; import it from skadv.{package}. "
            "The old path will be removed in a future release.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(globals()[package], name)
    raise AttributeError(f"module 'skadv' has no attribute {name!r}")
