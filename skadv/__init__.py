"""skadv: scikit-learn-compatible adversarial-example detectors backed by PyTorch."""

from ._base import BaseDetector, InconsistentVersionWarning, ProtectedModel
from ._distillation import ModelDistillationDetector
from ._vae import VAEDetector, calibration_analysis
from ._vae_plots import DistinctLabelsDisplay, ReconstructionCalibrationDisplay
from ._version import __version__

__all__ = [
    "BaseDetector",
    "DistinctLabelsDisplay",
    "InconsistentVersionWarning",
    "ModelDistillationDetector",
    "ProtectedModel",
    "ReconstructionCalibrationDisplay",
    "VAEDetector",
    "calibration_analysis",
    "__version__",
]

from . import attacks  # noqa: E402
from . import metrics  # noqa: E402
