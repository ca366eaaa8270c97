"""skadv: scikit-learn-compatible adversarial-example detectors backed by PyTorch."""

import warnings

from . import attacks, base, compat, corruptions, datasets, exceptions, metrics, plotting, utils
from ._legacy import install as _install_legacy_modules
from ._version import __version__
from .base import BaseDetector
from .detectors import (
    AdversarialAEDetector,
    ConfidenceDetector,
    FeatureSqueezingDetector,
    MahalanobisDetector,
    ModelDistillationDetector,
    VAEDetector,
)
from .exceptions import InconsistentVersionWarning
from .metrics import calibration_analysis
from .rejection import DeepNeuralRejection, DNRDetector, NystroemOneVsAll, OneVsAllSVC
from .utils import ProtectedModel

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
    "base",
    "calibration_analysis",
    "compat",
    "corruptions",
    "datasets",
    "exceptions",
    "metrics",
    "plotting",
    "utils",
]

# Files saved by skadv 0.1.0 name its modules before the family packages (skadv._vae, ...).
_install_legacy_modules(__name__)

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
