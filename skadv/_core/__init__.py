"""skadv's internal torch layer: the bottom of the import graph.

Devices and seeding, the model adapter and the attack surface, layer capture, losses,
skorch glue, persistence of torch objects, docstring templates, and the one module
holding every scikit-learn private import. Nothing here imports another skadv package;
the other packages import these names from ``skadv._core`` (never from its private
modules). Not public API: the public faces are :mod:`skadv.base` and :mod:`skadv.utils`.
"""

from ._device import flatten_nd, is_fitted_attribute, resolve_device, torch_seed
from ._docs import docstring_filler, fill_detector_doc, fill_torch_estimator_doc
from ._layers import LayerInfo, default_layers, forward_capturing, hookable_layers, probe_layers, resolve_layers
from ._losses import (
    DistillationLoss,
    distillation_loss,
    kl_divergence,
    kl_divergence_of_stacked_logits,
    student_log_proba,
    tempered_log_proba,
    tempered_proba,
)
from ._model import MODEL_OUTPUTS, ModelAdapter, ProtectedModel, adapt_model
from ._persist import decode_state, encode_state, module_from_state, module_to_state
from ._ranges import values_outside
from ._sklearn import (
    BaseComposition,
    HasMethods,
    Interval,
    Options,
    StrOptions,
    check_y,
    fit_context,
    svc_gamma,
    validate_parameter_constraints,
    validate_params,
)
from ._skorch import (
    EpochLog,
    NetWithFrozenModel,
    TensorBatches,
    TrainingNet,
    optimizer_options,
    resolve_optimizer,
)
from ._surface import AttackSurface, resolve_attack_surface
from ._warnings import warn_at_caller

__all__ = [
    "MODEL_OUTPUTS",
    "AttackSurface",
    "BaseComposition",
    "DistillationLoss",
    "EpochLog",
    "HasMethods",
    "Interval",
    "LayerInfo",
    "ModelAdapter",
    "NetWithFrozenModel",
    "Options",
    "ProtectedModel",
    "StrOptions",
    "TensorBatches",
    "TrainingNet",
    "adapt_model",
    "check_y",
    "decode_state",
    "default_layers",
    "distillation_loss",
    "docstring_filler",
    "encode_state",
    "fill_detector_doc",
    "fill_torch_estimator_doc",
    "fit_context",
    "flatten_nd",
    "forward_capturing",
    "hookable_layers",
    "is_fitted_attribute",
    "kl_divergence",
    "kl_divergence_of_stacked_logits",
    "module_from_state",
    "module_to_state",
    "optimizer_options",
    "probe_layers",
    "resolve_attack_surface",
    "resolve_device",
    "resolve_layers",
    "resolve_optimizer",
    "student_log_proba",
    "svc_gamma",
    "tempered_log_proba",
    "tempered_proba",
    "torch_seed",
    "validate_parameter_constraints",
    "validate_params",
    "values_outside",
    "warn_at_caller",
]
