"""Utilities shared by skadv's estimators and attacks, public for extensions.

:func:`adapt_model` is how every skadv estimator and attack reads the classifier it is
given (torch module, fitted skorch net, ``FrozenEstimator``, or, where no gradient is
needed, a fitted scikit-learn classifier with ``predict_proba``).
"""

from ._model import ModelAdapter, ProtectedModel, adapt_model

__all__ = ["ModelAdapter", "ProtectedModel", "adapt_model"]
