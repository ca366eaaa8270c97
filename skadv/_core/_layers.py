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
