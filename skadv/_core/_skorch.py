"""skorch glue for the detectors' training: the net, its batch iterator, its epoch log, optimizers by name.

:class:`TrainingNet` is the ``NeuralNet`` every detector trains through; :class:`TensorBatches`
its training iterator; :class:`EpochLog` its table of epochs (also the demo classifier's);
:class:`NetWithFrozenModel` a mixin for nets whose loss runs the frozen protected classifier.
:func:`resolve_optimizer` and :func:`optimizer_options` turn the detectors' ``optimizer``
parameter into skorch arguments.
"""

import contextlib
import re
import signal
import sys
import threading

import torch
from skorch import NeuralNet
from skorch.callbacks import PrintLog

# Optimizers by name: a string default keeps the estimator free of torch types (skops trusts it).
OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}

# Named optimizers torch implements as one fused kernel per step (CPU and CUDA): several
# times faster than the default per-tensor loop on the small networks detectors train.
_FUSED_OPTIMIZERS = {"adam", "adamw", "sgd"}


def resolve_optimizer(optimizer):
    """Map an optimizer name to its torch class; classes pass through."""
    return OPTIMIZERS[optimizer] if isinstance(optimizer, str) else optimizer


def optimizer_options(optimizer):
    """skorch ``optimizer__*`` arguments for an optimizer name or class."""
    if isinstance(optimizer, str) and optimizer in _FUSED_OPTIMIZERS:
        return {"optimizer__fused": True}
    return {}


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class EpochLog(PrintLog):
    """skorch's ``PrintLog`` whose table keeps its colour codes only when printed to a terminal.

    skorch colours the best value of each column with ANSI escape codes; written to a log
    file or a pipe they show up as ``\x1b[36m`` noise. The check happens at every epoch,
    so a redirected ``sys.stdout`` is seen as it is then.
    """

    def table(self, row):
        text = super().table(row)
        isatty = getattr(sys.stdout, "isatty", None)
        to_terminal = self.sink is print and isatty is not None and isatty()
        return text if to_terminal else _ANSI_ESCAPE.sub("", text)


@contextlib.contextmanager
def _flagging_sigint(net):
    """While training in the main thread, record on ``net`` that SIGINT (Ctrl-C) arrived.

    The previous Python handler still runs (and raises KeyboardInterrupt as usual); the
    flag only tells a user's Ctrl-C apart from a callback raising KeyboardInterrupt.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return

    def handler(signum, frame):
        net._sigint_received = True
        previous(signum, frame)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class TrainingNet(NeuralNet):
    """skorch ``NeuralNet`` whose training raises when interrupted instead of returning quietly.

    skorch treats every KeyboardInterrupt during training as "stop here": it swallows
    it and ``fit`` returns normally with whatever the network learnt so far. skadv's
    detectors would then be fitted, thresholds included, on an under-trained network.
    Here a KeyboardInterrupt a callback raises at the end of an epoch is still a request
    to stop (skorch's ``EarlyStopping`` works that way) and training ends normally; any
    other one — Ctrl-C (seen through SIGINT in the main thread) or one raised mid-epoch —
    is re-raised by ``fit`` once skorch's ``on_train_end`` callbacks have run.
    Its epoch table (``verbose``) is an :class:`EpochLog`.
    """

    @property
    def _default_callbacks(self):
        return [(name, EpochLog() if name == "print_log" else callback)
                for name, callback in super()._default_callbacks]

    def notify(self, method_name, **cb_kwargs):
        try:
            super().notify(method_name, **cb_kwargs)
        except KeyboardInterrupt:
            if method_name == "on_epoch_end" and not getattr(self, "_sigint_received", False):
                self._stop_requested = True
            raise

    def fit_loop(self, *args, **kwargs):
        try:
            return super().fit_loop(*args, **kwargs)
        except KeyboardInterrupt:
            self._interrupted = not getattr(self, "_stop_requested", False)
            raise

    def partial_fit(self, *args, **kwargs):
        self._sigint_received = self._stop_requested = self._interrupted = False
        with _flagging_sigint(self):
            super().partial_fit(*args, **kwargs)
        if self._interrupted:
            raise KeyboardInterrupt("Training was interrupted; the estimator is left as it was before fit.")
        return self


class TensorBatches:
    """skorch training iterator that slices whole batches out of in-memory tensors.

    skorch's default ``DataLoader`` fetches rows one by one and collates them, which costs
    more than a training step of the small networks detectors train. Same contract:
    seeded shuffling through ``generator``, last (short) batch kept, ``batch_size=-1``
    for one batch.
    """

    def __init__(self, dataset, batch_size=128, shuffle=False, generator=None):
        self.X = torch.as_tensor(dataset.X)
        y = getattr(dataset, "y", None)
        self.y = None if y is None else torch.as_tensor(y)
        self.batch_size = len(self.X) if batch_size == -1 else batch_size
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self):
        return -(-len(self.X) // self.batch_size)

    def __iter__(self):
        if self.shuffle:
            batches = torch.randperm(len(self.X), generator=self.generator).split(self.batch_size)
        else:
            batches = (slice(i, i + self.batch_size) for i in range(0, len(self.X), self.batch_size))
        for rows in batches:
            yield self.X[rows], None if self.y is None else self.y[rows]


class NetWithFrozenModel:
    """Mixin for skorch nets whose loss runs the frozen protected classifier ``frozen_model``.

    The classifier is set before skorch's ``__init__``, so skorch does not register it as
    one of the net's modules: the optimizer never sees its parameters, skorch's per-batch
    switch between training and evaluation mode leaves it in evaluation mode, and no
    time goes into walking its module tree on every batch. It must already be on the
    net's device and in evaluation mode.
    """

    def __init__(self, *args, frozen_model, **kwargs):
        self.frozen_model = frozen_model
        super().__init__(*args, **kwargs)
