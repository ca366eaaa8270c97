"""skadv: scikit-learn-compatible adversarial-example detectors backed by PyTorch."""

from ._base import BaseDetector, InconsistentVersionWarning, ProtectedModel
from . import corruptions
from ._distillation import ModelDistillationDetector
from ._harm import harmfulness, ks_drift_test
from ._version import __version__

__all__ = [
    "BaseDetector",
    "InconsistentVersionWarning",
    "ModelDistillationDetector",
    "ProtectedModel",
    "corruptions",
    "harmfulness",
    "ks_drift_test",
    "__version__",
]

from . import attacks  # noqa: E402
from . import metrics  # noqa: E402
from . import plotting  # noqa: E402
