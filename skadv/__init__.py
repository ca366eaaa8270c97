"""skadv: scikit-learn-compatible adversarial-example detectors backed by PyTorch."""

from . import compat, corruptions, datasets, utils
from ._adversarial_ae import AdversarialAEDetector
from ._base import BaseDetector, InconsistentVersionWarning
from ._distillation import ModelDistillationDetector
from ._dnr import DeepNeuralRejection, DNRDetector
from ._harm import harmfulness, ks_drift_test
from ._kernel_svm import NystroemOneVsAll, OneVsAllSVC
from ._model import ProtectedModel
from ._vae import VAEDetector, calibration_analysis
from ._vae_plots import DistinctLabelsDisplay, ReconstructionCalibrationDisplay
from ._version import __version__

__all__ = [
    "AdversarialAEDetector",
    "BaseDetector",
    "DNRDetector",
    "DeepNeuralRejection",
    "DistinctLabelsDisplay",
    "InconsistentVersionWarning",
    "ModelDistillationDetector",
    "NystroemOneVsAll",
    "OneVsAllSVC",
    "ProtectedModel",
    "ReconstructionCalibrationDisplay",
    "VAEDetector",
    "__version__",
    "attacks",
    "calibration_analysis",
    "compat",
    "corruptions",
    "datasets",
    "harmfulness",
    "ks_drift_test",
    "metrics",
    "plotting",
    "utils",
]

# Submodules importing the estimators above.
from . import attacks  # noqa: E402
from . import metrics  # noqa: E402
from . import plotting  # noqa: E402
