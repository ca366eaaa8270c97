"""skadv: scikit-learn-compatible adversarial-example detectors backed by PyTorch."""

from ._base import BaseDetector, InconsistentVersionWarning, ProtectedModel
from ._distillation import ModelDistillationDetector
from ._dnr import DeepNeuralRejection, DNRDetector
from ._kernel_svm import OneVsAllSVC
from ._version import __version__

__all__ = [
    "BaseDetector",
    "DeepNeuralRejection",
    "DNRDetector",
    "InconsistentVersionWarning",
    "ModelDistillationDetector",
    "OneVsAllSVC",
    "ProtectedModel",
    "__version__",
]

from . import attacks  # noqa: E402
from . import metrics  # noqa: E402
