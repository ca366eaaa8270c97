"""Utilities shared by skadv's estimators and attacks, public for extensions.

:func:`adapt_model` is how every skadv estimator and attack reads the classifier it is
given (torch module, fitted skorch net, ``FrozenEstimator``, or, where no gradient is
needed, a fitted scikit-learn classifier with ``predict_proba``).

:class:`AttackSurface` is the public attack protocol: every attackable estimator
implements ``attack_surface()`` returning one, and :func:`resolve_attack_surface` gives
the surface of any target, so a third-party detector is attacked like skadv's own.

:func:`hookable_layers` lists the layers of a network that hooks can read (DNR's
``layers``, AdversarialAE's ``hidden_layer_kld``), with their output widths.
"""

from .._core import (
    AttackSurface,
    LayerInfo,
    ModelAdapter,
    ProtectedModel,
    adapt_model,
    hookable_layers,
    resolve_attack_surface,
)

__all__ = [
    "AttackSurface",
    "LayerInfo",
    "ModelAdapter",
    "ProtectedModel",
    "adapt_model",
    "hookable_layers",
    "resolve_attack_surface",
]
