"""Plain-data persistence of torch modules.

skadv estimators never pickle torch objects. ``__getstate__`` turns every
``nn.Module`` into a nested dict of builtins and CPU numpy arrays (class path,
plain attributes, parameters, buffers, children), and ``__setstate__`` rebuilds
the modules from it. This buys three things:

* an estimator trained on CUDA loads on a CPU-only machine;
* ``skops.io`` can persist an estimator trusting only skadv's own types
  (skops cannot serialise tensors);
* loading never imports code: module classes are looked up in ``torch``,
  ``skadv`` or modules the caller has already imported.

Forward hooks and parametrizations registered on a user's module are not
persisted.
"""

import importlib
import sys

import numpy as np
import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter

_MODULE_KEY = "__skadv_module__"
_TENSOR_KEY = "__skadv_tensor__"
_PLAIN_SCALARS = (bool, int, float, complex, str, bytes, type(None))
# nn.Module internals rebuilt by nn.Module.__init__ or stored separately.
_MODULE_INTERNALS = {"_parameters", "_buffers", "_modules", "training", "_non_persistent_buffers_set"}


def _is_plain(value):
    if isinstance(value, _PLAIN_SCALARS):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _tensor_to_state(tensor):
    if isinstance(tensor, (UninitializedParameter, UninitializedBuffer)):
        return None
    return tensor.detach().cpu().numpy().copy()


def _class_path(cls):
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve_class(path):
    module_name, qualname = path.split(":")
    root = module_name.split(".")[0]
    if root in ("torch", "skadv"):
        module = importlib.import_module(module_name)
    elif module_name in sys.modules:
        module = sys.modules[module_name]
    else:
        raise ValueError(
            f"Cannot rebuild module class {qualname!r}: its module {module_name!r} is not "
            "imported. skadv never imports code while loading; import it first "
            f"(e.g. `import {module_name}`) and load again."
        )
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"Module class {qualname!r} not found in {module_name!r}.")
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ValueError(f"{path!r} is not a torch.nn.Module class.")
    return obj


def module_to_state(module):
    """Describe ``module`` with builtins and CPU numpy arrays only."""
    attrs, raw = {}, {}
    for key, value in vars(module).items():
        if key in _MODULE_INTERNALS or ("hook" in key and key.startswith("_")):
            continue
        if isinstance(value, torch.Tensor):
            attrs[key] = {_TENSOR_KEY: _tensor_to_state(value)}
        elif _is_plain(value):
            attrs[key] = value
        else:
            # Functions, enums and the like pickle by reference.
            raw[key] = value
    return {
        _MODULE_KEY: 1,
        "class": _class_path(type(module)),
        "training": bool(module.training),
        "attrs": attrs,
        "raw_attrs": raw,
        "params": {k: _tensor_to_state(p) for k, p in module._parameters.items() if p is not None},
        "params_none": [k for k, p in module._parameters.items() if p is None],
        "requires_grad": {k: bool(p.requires_grad) for k, p in module._parameters.items() if p is not None},
        "buffers": {k: _tensor_to_state(b) for k, b in module._buffers.items() if b is not None},
        "buffers_none": [k for k, b in module._buffers.items() if b is None],
        "non_persistent": sorted(module._non_persistent_buffers_set),
        "children": {k: None if m is None else module_to_state(m) for k, m in module._modules.items()},
    }


def module_from_state(state):
    """Rebuild the module described by :func:`module_to_state` on the CPU."""
    cls = _resolve_class(state["class"])
    module = cls.__new__(cls)
    nn.Module.__init__(module)
    for key, value in state["attrs"].items():
        if isinstance(value, dict) and _TENSOR_KEY in value:
            value = torch.from_numpy(np.array(value[_TENSOR_KEY]))
        object.__setattr__(module, key, value)
    for key, value in state["raw_attrs"].items():
        object.__setattr__(module, key, value)
    lazy_pending = False
    for key, array in state["params"].items():
        if array is None:
            module._parameters[key] = UninitializedParameter()
            lazy_pending = True
        else:
            module._parameters[key] = nn.Parameter(
                torch.from_numpy(np.array(array)), requires_grad=state["requires_grad"][key]
            )
    for key in state["params_none"]:
        module._parameters[key] = None
    for key, array in state["buffers"].items():
        if array is None:
            module._buffers[key] = UninitializedBuffer()
            lazy_pending = True
        else:
            module._buffers[key] = torch.from_numpy(np.array(array))
    for key in state["buffers_none"]:
        module._buffers[key] = None
    module._non_persistent_buffers_set = set(state["non_persistent"])
    for key, child in state["children"].items():
        module._modules[key] = None if child is None else module_from_state(child)
    module.training = state["training"]
    if lazy_pending and isinstance(module, LazyModuleMixin):
        # LazyModuleMixin.__init__ registers these; we bypassed __init__.
        module._load_hook = module._register_load_state_dict_pre_hook(module._lazy_load_hook)
        module._initialize_hook = module.register_forward_pre_hook(
            module._infer_parameters, with_kwargs=True
        )
    return module


def encode_modules(value):
    """Replace modules in ``value`` (or in a list/tuple/dict of it) by plain state."""
    if isinstance(value, nn.Module):
        return module_to_state(value)
    if isinstance(value, (list, tuple)) and any(isinstance(v, nn.Module) for v in value):
        return {"__skadv_seq__": type(value).__name__, "items": [encode_modules(v) for v in value]}
    if isinstance(value, dict) and any(isinstance(v, nn.Module) for v in value.values()):
        return {"__skadv_dict__": 1, "items": {k: encode_modules(v) for k, v in value.items()}}
    return value


def decode_modules(value):
    """Inverse of :func:`encode_modules`."""
    if isinstance(value, dict):
        if _MODULE_KEY in value:
            return module_from_state(value)
        if "__skadv_seq__" in value:
            items = [decode_modules(v) for v in value["items"]]
            return tuple(items) if value["__skadv_seq__"] == "tuple" else items
        if "__skadv_dict__" in value:
            return {k: decode_modules(v) for k, v in value["items"].items()}
    return value
