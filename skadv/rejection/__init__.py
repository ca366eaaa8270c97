"""Classification with a reject option: Deep Neural Rejection and its kernel machines.

:class:`DeepNeuralRejection` fits RBF SVMs on hidden layers of a network and rejects
inputs whose combined class scores are all low; :class:`DNRDetector` is its
outlier-detector view. :class:`OneVsAllSVC` and :class:`NystroemOneVsAll` are the
one-vs-all kernel machines it uses (exact, and Nystroem-approximated).
:class:`FoldFittingMixin` is the interface through which DNR fits all folds of a layer
in one pass (returning plain :class:`FoldFit` results); a classifier implementing it
shares work between the folds.
"""

from ._dnr import DeepNeuralRejection
from ._dnr_detector import DNRDetector
from ._folds import FoldFit, FoldFittingMixin
from ._nystroem import NystroemOneVsAll
from ._one_vs_all import OneVsAllSVC

__all__ = ["DNRDetector", "DeepNeuralRejection", "FoldFit", "FoldFittingMixin", "NystroemOneVsAll", "OneVsAllSVC"]
