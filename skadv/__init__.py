"""skadv: scikit-learn-compatible adversarial-example detectors backed by PyTorch."""

from ._adversarial_ae import AdversarialAEDetector
from ._base import BaseDetector, InconsistentVersionWarning, ProtectedModel
from ._distillation import ModelDistillationDetector
from ._version import __version__

__all__ = [
    "AdversarialAEDetector",
    "BaseDetector",
    "InconsistentVersionWarning",
    "ModelDistillationDetector",
    "ProtectedModel",
    "__version__",
]

from . import attacks  # noqa: E402
