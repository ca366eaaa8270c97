"""Utilities shared by skadv's estimators and attacks, public for extensions.

:func:`adapt_model` is how every skadv estimator and attack reads the classifier it is
given (torch module, fitted skorch net, ``FrozenEstimator``, or, where no gradient is
needed, a fitted scikit-learn classifier with ``predict_proba``).

:class:`AttackSurface` is the public attack protocol: every attackable estimator
implements ``attack_surface()`` returning one, and :func:`resolve_attack_surface` gives
the surface of any target, so a third-party detector is attacked like skadv's own.
"""

from .._core import AttackSurface, ModelAdapter, ProtectedModel, adapt_model, resolve_attack_surface

__all__ = ["AttackSurface", "ModelAdapter", "ProtectedModel", "adapt_model", "resolve_attack_surface"]
