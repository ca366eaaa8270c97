"""scikit-learn-compatible adversarial-example detectors backed by PyTorch."""

from ._version import __version__
from . import attacks
