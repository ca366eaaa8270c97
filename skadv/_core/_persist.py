"""Persistence of the torch objects inside skadv estimators.

An estimator's ``__getstate__`` passes its attributes through :func:`encode_state`,
which replaces every torch object by plain data:

* tensors, parameters and buffers become CPU numpy arrays, so an estimator trained on
  CUDA loads on a CPU-only machine and ``skops.io`` (which cannot serialise tensors)
  can store it;
* an ``nn.Module`` becomes a dict of its class, plain attributes, tensors and children;
  a fitted skorch net (e.g. the protected ``model``, also inside
  ``sklearn.frozen.FrozenEstimator``) a dict of its attributes, its optimizers by their
  ``state_dict``. Objects met twice (a skorch net's ``module`` and ``module_``, tied
  weights) are stored once and stay shared.

Classes are referred to as pickle refers to them, with one exception:

* torch's own classes (``torch.nn`` modules, ``torch.optim`` optimizers) and skadv's
  module classes are stored by name and resolved on load from a fixed table of those
  classes. A name outside the table is a ``ValueError``: loading never imports a
  module named in a file.
* Any other class -- a user's ``mymodels.MyCNN``, a torchvision model -- is stored as the
  class object itself. pickle, joblib and cloudpickle store it by reference and import
  its module on load, like any pickled class (so it must be importable by its qualified
  name in the loading process; cloudpickle also ships classes defined in ``__main__``).
  skops stores it as a type: ``skops.io.get_untrusted_types`` lists it (e.g.
  ``"mymodels.MyCNN"``) and skops imports it only once the user trusts it.

Loading writes attributes straight into ``__dict__`` (no property setter or
``__setattr__`` of the class runs) and rejects any malformed state with a
``ValueError`` naming the field. Forward hooks and parametrizations registered on a
user's module are not persisted.
"""

import functools
import importlib
import pkgutil
import sys

import numpy as np
import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter
from torch.utils.hooks import RemovableHandle

from ._device import resolve_device

_FORMAT = 2
_MODULE = "__skadv_module__"
_TENSOR = "__skadv_tensor__"
_NET = "__skadv_net__"
_CLASS = "__skadv_class__"
_REF = "__skadv_ref__"
_SEQ = "__skadv_seq__"
_DICT = "__skadv_dict__"
_FROZEN = "__skadv_frozen__"
_DTYPE = "__skadv_dtype__"
_DEVICE = "__skadv_device__"

# What nn.Module.__init__ creates (parameter/buffer/child tables, hook tables, the
# training flag): rebuilt on load, stored separately or not at all.
_MODULE_INTERNALS = frozenset(vars(nn.Module()))

# Module classes of skadv itself are stored by name: every class defined in a module of the
# skadv package or of its subpackages (estimators, losses, nets, kernel machines, datasets'
# CNN), found by walking the package, so that a module added, moved or split needs no entry
# here. Names that files of an earlier layout carry (``skadv._kernel_svm:RBFKernelMachine``)
# resolve through the old module paths skadv registers in ``sys.modules`` on import.
_ROOT = __package__.partition(".")[0]


def _skadv_module_homes():
    package = sys.modules[_ROOT]
    return tuple(
        info.name
        for info in pkgutil.walk_packages(package.__path__, f"{_ROOT}.")
        if info.name.rpartition(".")[2] != "__main__"
    )


# Same-size integer views for tensors whose dtype numpy lacks (bfloat16, float8, ...).
_BITS_DTYPES = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _class_key(cls):
    return f"{cls.__module__}:{cls.__qualname__}"


def _subclasses_in(namespace, base, module_name=None):
    return [
        obj
        for obj in vars(namespace).values()
        if isinstance(obj, type)
        and issubclass(obj, base)
        and (module_name is None or obj.__module__ == module_name)
    ]


@functools.cache
def _allowed_classes():
    """The classes a file may name by string: ``{"module:qualname": class}``."""
    classes = [nn.Module, *_subclasses_in(nn, nn.Module), *_subclasses_in(torch.optim, torch.optim.Optimizer)]
    for name in _skadv_module_homes():
        classes += _subclasses_in(importlib.import_module(name), nn.Module, name)
    return {_class_key(cls): cls for cls in classes}


def _class_ref(cls):
    """The class's name when the table resolves it back to ``cls``, else the class itself."""
    key = _class_key(cls)
    return key if _allowed_classes().get(key) is cls else cls


def _moved_class(ref):
    """The table's class that a name of an earlier skadv layout refers to, else None.

    Only modules already in ``sys.modules`` under skadv's name are looked at (skadv
    registers its old module paths there); nothing is imported.
    """
    module_name, _, qualname = ref.partition(":")
    module = sys.modules.get(module_name) if module_name.startswith(f"{_ROOT}.") else None
    cls = module
    for part in qualname.split(".") if module is not None else ():
        cls = getattr(cls, part, None)
    if isinstance(cls, type) and _allowed_classes().get(_class_key(cls)) is cls:
        return cls
    return None


def _resolve_class(ref, base, field):
    if isinstance(ref, str):
        cls = _allowed_classes().get(ref)
        if cls is None:
            cls = _moved_class(ref)
        if cls is None:
            raise ValueError(
                f"{field}: unknown class {ref!r}. Classes are stored by name only when they are "
                "torch.nn/torch.optim or skadv classes; any other class is stored as the class "
                "itself (pickle imports it, skops lists it in get_untrusted_types). The file is "
                "corrupt or was not written by skadv."
            )
    elif isinstance(ref, type):
        cls = ref
    else:
        raise ValueError(f"{field} must be a class or a class name, got {type(ref).__name__}.")  # noqa: TRY004
    if not issubclass(cls, base):
        raise ValueError(  # noqa: TRY004
            f"{field}: {cls.__module__}.{cls.__qualname__} is not a {base.__module__}.{base.__qualname__}."
        )
    return cls


def _skorch_net_class():
    # skorch is a dependency, but only a process that has imported it can hold a net.
    skorch = sys.modules.get("skorch")
    return None if skorch is None else skorch.NeuralNet


def _frozen_estimator_class():
    frozen = sys.modules.get("sklearn.frozen")
    return None if frozen is None else frozen.FrozenEstimator


# ----------------------------------------------------------------------------- encoding


class _Encoder:
    """Turns torch objects into plain data; objects met twice are stored once."""

    def __init__(self):
        # id -> (index, object): holding the object keeps its id from being reused.
        self.memo = {}

    def encode(self, value):
        net_class = _skorch_net_class()
        if isinstance(value, (torch.Tensor, nn.Module)) or (net_class is not None and isinstance(value, net_class)):
            seen = self.memo.get(id(value))
            if seen is not None:
                return {_REF: seen[0]}
            index = len(self.memo)
            self.memo[id(value)] = (index, value)
            if isinstance(value, torch.Tensor):
                state = self._tensor(value)
            elif isinstance(value, nn.Module):
                state = self._module(value)
            else:
                state = self._net(value)
            state["id"] = index
            return state
        if isinstance(value, torch.dtype):
            return {_DTYPE: str(value).removeprefix("torch.")}
        if isinstance(value, torch.device):
            return {_DEVICE: str(value)}
        if isinstance(value, type):
            ref = _class_ref(value)
            return value if ref is value else {_CLASS: ref}
        frozen_class = _frozen_estimator_class()
        if frozen_class is not None and type(value) is frozen_class:
            inner = self.encode(value.estimator)
            return value if inner is value.estimator else {_FROZEN: inner}
        if type(value) in (list, tuple):
            items = [self.encode(v) for v in value]
            if all(a is b for a, b in zip(items, value)):
                return value
            return {_SEQ: type(value).__name__, "items": items}
        if type(value) is dict:
            items = {k: self.encode(v) for k, v in value.items()}
            if all(items[k] is v for k, v in value.items()):
                return value
            return {_DICT: _FORMAT, "items": items}
        return value

    def _tensor(self, tensor):
        state = {
            _TENSOR: None,
            "parameter": isinstance(tensor, nn.Parameter),
            "requires_grad": bool(tensor.requires_grad),
        }
        if isinstance(tensor, (UninitializedParameter, UninitializedBuffer)):
            state["uninitialized"] = True
            return state
        data = tensor.detach().cpu().resolve_conj().resolve_neg()
        try:
            state[_TENSOR] = data.numpy().copy()
        except TypeError:  # a dtype numpy lacks: store its bits
            state[_TENSOR] = data.contiguous().view(_BITS_DTYPES[data.element_size()]).numpy().copy()
            state["dtype"] = str(data.dtype).removeprefix("torch.")
        return state

    def _module(self, module):
        return {
            _MODULE: _FORMAT,
            "class": _class_ref(type(module)),
            "training": bool(module.training),
            "attrs": {
                key: self.encode(value)
                for key, value in vars(module).items()
                if key not in _MODULE_INTERNALS and not isinstance(value, RemovableHandle)
            },
            "params": {k: None if p is None else self.encode(p) for k, p in module._parameters.items()},
            "buffers": {k: None if b is None else self.encode(b) for k, b in module._buffers.items()},
            "non_persistent": sorted(module._non_persistent_buffers_set),
            "children": {k: None if m is None else self.encode(m) for k, m in module._modules.items()},
        }

    def _net(self, net):
        optimizers = {k: v for k, v in vars(net).items() if isinstance(v, torch.optim.Optimizer)}
        return {
            _NET: _FORMAT,
            "class": _class_ref(type(net)),
            "attrs": {k: self.encode(v) for k, v in vars(net).items() if k not in optimizers},
            "optimizers": {k: self.encode(opt.state_dict()) for k, opt in optimizers.items()},
        }


# ----------------------------------------------------------------------------- decoding


def _get(state, key, types, field):
    types = types if isinstance(types, tuple) else (types,)
    if key not in state:
        raise ValueError(f"{field} lacks the entry {key!r}; the file is corrupt or was not written by skadv.")
    value = state[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        names = " or ".join(t.__name__ for t in types)
        raise ValueError(f"{field}[{key!r}] must be a {names}, got {type(value).__name__}.")
    return value


def _check_names(names, field):
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"{field} has a non-string name {name!r}.")  # noqa: TRY004


class _Decoder:
    """Inverse of :class:`_Encoder`; raises ValueError naming the field of any malformed state."""

    def __init__(self):
        self.objects = {}

    def decode(self, value, field):
        if type(value) is not dict:
            return value
        if _REF in value:
            index = value[_REF]
            if not isinstance(index, int) or isinstance(index, bool) or index not in self.objects:
                raise ValueError(f"{field} refers to an unknown object {index!r}.")
            return self.objects[index]
        if _TENSOR in value:
            return self._remember(value, self._tensor(value, field), field)
        if _MODULE in value:
            return self._module(value, field)
        if _NET in value:
            return self._net(value, field)
        if _CLASS in value:
            return _resolve_class(value[_CLASS], object, f"{field}[{_CLASS!r}]")
        if _DTYPE in value:
            dtype = getattr(torch, str(value[_DTYPE]), None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"{field}: {value[_DTYPE]!r} is not a torch dtype.")
            return dtype
        if _DEVICE in value:
            try:
                return torch.device(str(value[_DEVICE]))
            except RuntimeError as exc:
                raise ValueError(f"{field}: {value[_DEVICE]!r} is not a torch device.") from exc
        if _FROZEN in value:
            from sklearn.frozen import FrozenEstimator

            return FrozenEstimator(self.decode(value[_FROZEN], f"{field}[{_FROZEN!r}]"))
        if _SEQ in value:
            kind = value[_SEQ]
            if kind not in ("list", "tuple"):
                raise ValueError(f"{field}[{_SEQ!r}] must be 'list' or 'tuple', got {kind!r}.")
            items = _get(value, "items", (list, tuple), field)
            items = [self.decode(v, f"{field}[{i}]") for i, v in enumerate(items)]
            return tuple(items) if kind == "tuple" else items
        if _DICT in value:
            items = _get(value, "items", dict, field)
            return {k: self.decode(v, f"{field}[{k!r}]") for k, v in items.items()}
        return value

    def _remember(self, state, obj, field):
        index = _get(state, "id", int, field)
        if index in self.objects:
            raise ValueError(f"{field}['id'] repeats the id {index}.")
        self.objects[index] = obj
        return obj

    def _tensor(self, state, field):
        parameter = _get(state, "parameter", bool, field)
        requires_grad = _get(state, "requires_grad", bool, field)
        if state.get("uninitialized", False) is True:
            return UninitializedParameter(requires_grad=requires_grad) if parameter else UninitializedBuffer()
        data = state[_TENSOR]
        if not isinstance(data, np.ndarray) or data.dtype.kind not in "biufc":
            raise ValueError(f"{field}[{_TENSOR!r}] must be a numeric numpy array, got {type(data).__name__}.")
        tensor = torch.from_numpy(np.array(data, copy=True))
        if "dtype" in state:
            dtype = getattr(torch, str(state["dtype"]), None)
            if (
                not isinstance(dtype, torch.dtype)
                or dtype.itemsize != data.dtype.itemsize
                or data.dtype.kind not in "iu"
            ):
                raise ValueError(f"{field}['dtype'] {state['dtype']!r} does not match the stored {data.dtype} bits.")
            tensor = tensor.view(dtype)
        if requires_grad and not (tensor.is_floating_point() or tensor.is_complex()):
            raise ValueError(f"{field}['requires_grad'] is set on a {tensor.dtype} tensor.")
        return nn.Parameter(tensor, requires_grad=requires_grad) if parameter else tensor.requires_grad_(requires_grad)

    def _check_format(self, state, tag, field):
        if state[tag] != _FORMAT:
            raise ValueError(f"{field} has format {state[tag]!r}; this skadv reads format {_FORMAT}.")

    def _module(self, state, field):
        self._check_format(state, _MODULE, field)
        cls = _resolve_class(_get(state, "class", (str, type), field), nn.Module, f"{field}['class']")
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        self._remember(state, module, field)
        attrs = _get(state, "attrs", dict, field)
        for key, value in attrs.items():
            if not isinstance(key, str) or key in _MODULE_INTERNALS:
                raise ValueError(f"{field}['attrs'] may not set {key!r}.")
            module.__dict__[key] = self.decode(value, f"{field}['attrs'][{key!r}]")
        lazy_pending = False
        for kind, table in (("params", module._parameters), ("buffers", module._buffers)):
            entries = _get(state, kind, dict, field)
            _check_names(entries, f"{field}[{kind!r}]")
            for key, entry in entries.items():
                tensor = None if entry is None else self.decode(entry, f"{field}[{kind!r}][{key!r}]")
                expected = nn.Parameter if kind == "params" else torch.Tensor
                if tensor is not None and not isinstance(tensor, expected):
                    raise ValueError(f"{field}[{kind!r}][{key!r}] must be a {expected.__name__}.")
                lazy_pending |= isinstance(tensor, (UninitializedParameter, UninitializedBuffer))
                table[key] = tensor
        non_persistent = _get(state, "non_persistent", (list, tuple), field)
        if not set(non_persistent) <= set(module._buffers):
            raise ValueError(f"{field}['non_persistent'] names buffers the module does not have.")
        module._non_persistent_buffers_set = set(non_persistent)
        children = _get(state, "children", dict, field)
        _check_names(children, f"{field}['children']")
        for key, child in children.items():
            child = None if child is None else self.decode(child, f"{field}['children'][{key!r}]")
            if child is not None and not isinstance(child, nn.Module):
                raise ValueError(f"{field}['children'][{key!r}] must be a module.")
            module._modules[key] = child
        module.__dict__["training"] = _get(state, "training", bool, field)
        if lazy_pending and isinstance(module, LazyModuleMixin):
            # LazyModuleMixin.__init__ registers these; we bypassed __init__.
            module._load_hook = module._register_load_state_dict_pre_hook(module._lazy_load_hook)
            module._initialize_hook = module.register_forward_pre_hook(module._infer_parameters, with_kwargs=True)
        return module

    def _net(self, state, field):
        from skorch import NeuralNet

        self._check_format(state, _NET, field)
        cls = _resolve_class(_get(state, "class", (str, type), field), NeuralNet, f"{field}['class']")
        net = cls.__new__(cls)
        self._remember(state, net, field)
        attrs = _get(state, "attrs", dict, field)
        _check_names(attrs, f"{field}['attrs']")
        net.__dict__.update({k: self.decode(v, f"{field}['attrs'][{k!r}]") for k, v in attrs.items()})
        if isinstance(net.__dict__.get("device"), str):
            # Weights load on the CPU; move them to the saved device where it exists here.
            net.__dict__["device"] = resolve_device(net.device, fitting=False)
            for value in net.__dict__.values():
                if isinstance(value, nn.Module):
                    value.to(net.device)
        optimizers = _get(state, "optimizers", dict, field)
        _check_names(optimizers, f"{field}['optimizers']")
        if optimizers:
            net.initialize_optimizer()
            for key, saved in optimizers.items():
                optimizer = net.__dict__.get(key)
                if not isinstance(optimizer, torch.optim.Optimizer):
                    raise ValueError(  # noqa: TRY004
                        f"{field}['optimizers'][{key!r}] is not an optimizer the net creates."
                    )
                optimizer.load_state_dict(self.decode(saved, f"{field}['optimizers'][{key!r}]"))
        return net


# ----------------------------------------------------------------------------- entry points


def encode_state(state):
    """``state`` (an estimator's attribute dict) with its torch objects as plain data."""
    encoder = _Encoder()
    return {key: encoder.encode(value) for key, value in state.items()}


def decode_state(state, owner):
    """Inverse of :func:`encode_state`; ``owner`` names the estimator in error messages."""
    if type(state) is not dict:
        raise ValueError(f"The saved state of {owner} must be a dict, got {type(state).__name__}.")
    _check_names(state, f"The saved state of {owner}")
    decoder = _Decoder()
    return {key: decoder.decode(value, f"{owner}.{key}") for key, value in state.items()}


def module_to_state(module):
    """Describe ``module`` with builtins, CPU numpy arrays and (non-torch) classes."""
    return _Encoder().encode(module)


def module_from_state(state):
    """Rebuild the module described by :func:`module_to_state` on the CPU."""
    module = _Decoder().decode(state, "module")
    if not isinstance(module, nn.Module):
        raise ValueError("The state does not describe a module.")  # noqa: TRY004
    return module
