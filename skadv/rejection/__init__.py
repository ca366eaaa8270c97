"""Classification with a reject option: Deep Neural Rejection and its kernel machines.

:class:`DeepNeuralRejection` fits RBF SVMs on hidden layers of a network and rejects
inputs whose combined class scores are all low; :class:`DNRDetector` is its
outlier-detector view. :class:`OneVsAllSVC` and :class:`NystroemOneVsAll` are the
one-vs-all kernel machines it uses (exact, and Nystroem-approximated).
"""

from ._dnr import DeepNeuralRejection
from ._dnr_detector import DNRDetector
from ._nystroem import NystroemOneVsAll
from ._one_vs_all import OneVsAllSVC

__all__ = ["DNRDetector", "DeepNeuralRejection", "NystroemOneVsAll", "OneVsAllSVC"]
