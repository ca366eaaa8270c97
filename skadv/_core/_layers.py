"""Thread-safe capture of hidden-layer outputs in one forward pass.

A captured layer carries one permanent forward hook, registered the first time it is
captured (under a lock) and never removed. The hook writes only into the captures the
*calling thread* has opened, so concurrent forward passes through the same network each
see their own batches. Registering hooks per call instead would let every thread's
hooks fire on every other thread's passes. Hooks are not persisted; a loaded model gets
them again on its first capture.

Conventions shared by every estimator that reads hidden layers:

* a layer is named by its dotted name in ``net.named_modules()``, or by its int
  position in that list without the root entry (``i`` is ``net[i]`` for an
  ``nn.Sequential``);
* a layer called several times in one forward pass contributes its **first** call;
* a layer returning a tuple or list contributes its first element (e.g. an LSTM's
  output sequence).
"""

import numbers
import threading
from typing import NamedTuple

import numpy as np
import torch

_local = threading.local()
_register_lock = threading.Lock()


def resolve_layers(net, layers, parameter="layers"):
    """Dotted names of the submodules of ``net`` designated by ``layers`` (names or int positions).

    Raises a ValueError naming ``parameter`` for unknown names, out-of-range positions
    and layers designated twice.
    """
    named = [name for name, _ in net.named_modules() if name]
    resolved = []
    for key in layers:
        if isinstance(key, (numbers.Integral, np.integer)) and not isinstance(key, bool):
            if not -len(named) <= int(key) < len(named):
                raise ValueError(
                    f"{parameter}: layer index {key} is out of range; the model has "
                    f"{len(named)} submodules: {named}."
                )
            resolved.append(named[int(key)])
        elif isinstance(key, str) and key in named:
            resolved.append(key)
        else:
            raise ValueError(
                f"{parameter}: {key!r} is not among the modules of the model; use a dotted name from "
                f"model.named_modules() or an int position in that list: {named}."
            )
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"{parameter}: each layer must be named once; got {list(layers)} -> {resolved}.")
    return tuple(resolved)


class _CaptureComplete(Exception):
    """Raised by the hook once a capture that does not need the network's output is complete."""

    def __init__(self, capture):
        super().__init__()
        self.capture = capture


class _Capture:
    """The outputs one thread collects during one forward pass."""

    def __init__(self, modules, transform, stop_when_complete):
        self.positions = {}
        for position, module in enumerate(modules):
            self.positions.setdefault(id(module), []).append(position)
        # Keeps the modules alive, so that their ids stay theirs while the capture is open.
        self.modules = modules
        self.outputs = [None] * len(modules)
        self.missing = len(modules)
        self.transform = transform
        self.stop_when_complete = stop_when_complete

    def record(self, module, output):
        positions = self.positions.get(id(module))
        if positions is None or self.outputs[positions[0]] is not None:
            return  # not captured here, or already captured at an earlier call
        if isinstance(output, (tuple, list)) and output:
            output = output[0]
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"Layer {type(module).__name__} returned {type(output).__name__}; a captured layer "
                "must return a tensor (or a tuple whose first element is one)."
            )
        value = self.transform(output)
        for position in positions:
            self.outputs[position] = value
        self.missing -= len(positions)
        if self.stop_when_complete and self.missing == 0:
            raise _CaptureComplete(self)


def _record_output(module, args, output):
    """The permanent forward hook: hand ``output`` to this thread's open captures."""
    for capture in getattr(_local, "captures", ()):
        capture.record(module, output)


def _ensure_hooked(module):
    if _record_output in module._forward_hooks.values():
        return
    with _register_lock:
        if _record_output not in module._forward_hooks.values():
            module.register_forward_hook(_record_output)


def hook_layers(net, names):
    """Register the capture hook on the named submodules of ``net`` (idempotent, thread-safe).

    Returns the submodules, in the order of ``names``.
    """
    modules = [net.get_submodule(name) for name in names]
    for module in modules:
        _ensure_hooked(module)
    return modules


def _clone(tensor):
    # A copy: later in-place operations of the forward pass (ReLU(inplace=True)) must
    # not change what was captured. Gradients still flow through it.
    return tensor.clone()


def forward_capturing(net, names, x, *, forward=None, transform=_clone, need_output=True):
    """Run ``forward(x)`` once and capture the outputs of the submodules of ``net`` named in ``names``.

    Parameters
    ----------
    net : nn.Module
    names : sequence of str
        Dotted names from :func:`resolve_layers`.
    x : tensor
    forward : callable, default=None
        What to run (e.g. a wrapper calling ``net``); None runs ``net``.
    transform : callable, default: a clone
        Applied to each layer's output when it is captured (so before later in-place
        operations of the pass can change it).
    need_output : bool, default=True
        False stops the forward pass as soon as every layer is captured and returns
        None as the output.

    Returns
    -------
    output : tensor or None
    captured : list of tensors, in the order of ``names``
    """
    capture = _Capture(hook_layers(net, names), transform, stop_when_complete=not need_output)
    captures = getattr(_local, "captures", None)
    if captures is None:
        captures = _local.captures = []
    captures.append(capture)
    output = None
    try:
        output = (net if forward is None else forward)(x)
    except _CaptureComplete as complete:
        if complete.capture is not capture:
            raise
    finally:
        captures.remove(capture)
    if capture.missing:
        missing = [name for name, value in zip(names, capture.outputs) if value is None]
        raise ValueError(f"Layers {missing} are not called by the model's forward pass.")
    return output, capture.outputs


# ----------------------------------------------------------------------------- listing layers


def _first_tensor(output):
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    return output if isinstance(output, torch.Tensor) else None


def probe_layers(net, x):
    """Every submodule of ``net`` that returns a tensor in one forward pass of ``x``, in the order they finish.

    Returns a list of ``(name, module, output)`` with the output (first call only, as
    captured: a tensor, or a tuple's first tensor) detached and cloned. Hooks are
    registered for the pass and removed after it, so call it on a private copy of the
    network when other threads may use it.
    """
    modules = {id(module): name for name, module in net.named_modules() if name}
    seen, records, handles = set(), [], []

    def record(module, args, output):
        name = modules.get(id(module))
        tensor = _first_tensor(output)
        if name is None or name in seen or tensor is None:
            return
        seen.add(name)
        records.append((name, module, tensor.detach().clone()))

    try:
        for name, module in net.named_modules():
            if name:
                handles.append(module.register_forward_hook(record))
        with torch.no_grad():
            output = net(x)
    finally:
        for handle in handles:
            handle.remove()
    return records, _first_tensor(output)


#: How many layers DNR reads by default (secml's tutorial reads three: relu2 to relu4).
N_DEFAULT_LAYERS = 3


def default_layers(records, output, n_layers=N_DEFAULT_LAYERS):
    """Names of the last ``n_layers`` hidden layers before the output, from :func:`probe_layers`.

    The rule: take the modules in the order their forward calls finish; drop each one whose
    output holds the same values as the one listed just before it (``Dropout`` in eval
    mode, ``Identity``, ``Flatten``, a container returning its last child's output); drop
    the trailing ones whose output is as wide as the network's output (the output layer,
    and a softmax after it); keep the last ``n_layers`` of the rest.
    """
    kept, previous = [], None
    for name, _, tensor in records:
        values = tensor.reshape(-1)
        if previous is not None and previous.shape == values.shape and torch.equal(previous, values):
            previous = values
            continue
        previous = values
        kept.append((name, tensor))
    n_outputs = None if output is None else output.reshape(output.shape[0], -1).shape[1]
    while kept and kept[-1][1].reshape(kept[-1][1].shape[0], -1).shape[1] == n_outputs:
        kept.pop()
    return [name for name, _ in kept[-n_layers:]]


class LayerInfo(NamedTuple):
    """One row of :func:`hookable_layers`' table."""

    name: str
    type: str
    shape: tuple
    width: int
    dnr_default: bool


def hookable_layers(model, X, *, input_shape=None):
    """The layers of a model that hooks can read, with their output widths, from one probe pass.

    Only a submodule that the forward pass calls can be read (by DNR's ``layers``,
    AdversarialAE's ``hidden_layer_kld``, ...): an activation applied as a function
    (``torch.relu(x)``) has no module to hook, while one applied as a module
    (``self.relu2(x)``) has. This runs the model once on the first rows of ``X`` (at
    most 8) and lists every submodule that returned a tensor, in the order their
    forward calls finished.

    Parameters
    ----------
    model : nn.Module, fitted skorch NeuralNetClassifier, or FrozenEstimator of either
        The network (copied; never modified).
    X : array-like of shape (n_samples, n_features) or (n_samples, *input_shape)
        Rows as the model takes them; only the first 8 are used.
    input_shape : tuple of int, default=None
        Shape of one row as the model expects it (e.g. ``(1, 28, 28)``); None uses the
        rows as they are.

    Returns
    -------
    layers : list of LayerInfo
        Named tuples ``(name, type, shape, width, dnr_default)``: the dotted name to pass
        as a layer, the module's class name, the shape of one row of its output, the
        number of values per row (the width of the features DNR reads), and whether
        :class:`~skadv.DeepNeuralRejection` reads it when ``layers=None``.
        ``pandas.DataFrame(layers)`` shows it as a table.

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from skadv.utils import hookable_layers
    >>> net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))
    >>> for layer in hookable_layers(net, np.zeros((1, 64), dtype="float32")):
    ...     print(layer.name, layer.type, layer.width, layer.dnr_default)
    0 Linear 32 False
    1 ReLU 32 True
    2 Linear 16 True
    3 ReLU 16 True
    4 Linear 10 False
    """
    from ._model import adapt_model

    net = adapt_model(model, need_gradients=True).module.net
    rows = np.asarray(X, dtype=np.float32)[:8]
    if rows.ndim == 0 or rows.shape[0] == 0:
        raise ValueError("X has no rows: pass at least one row the model can take.")
    if input_shape is not None:
        rows = rows.reshape((rows.shape[0], *(int(s) for s in input_shape)))
    try:
        records, output = probe_layers(net, torch.from_numpy(np.ascontiguousarray(rows)))
    except RuntimeError as exc:
        raise ValueError(
            f"The model cannot process inputs shaped {rows.shape[1:]}: {exc}. Set input_shape to the shape of "
            "one input as the model expects it (e.g. (1, 28, 28) for a channels-first image)."
        ) from exc
    chosen = set(default_layers(records, output))
    return [
        LayerInfo(name, type(module).__name__, tuple(tensor.shape[1:]), int(tensor[0].numel()), name in chosen)
        for name, module, tensor in records
    ]
