"""Tiny torch models shared by the tests."""

import numpy as np
import torch
from torch import nn


class LazyMLP(nn.Module):
    """Classifier that adapts to any input width (for sklearn's common checks)."""

    def __init__(self, n_classes=3, hidden=8):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.LazyLinear(hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, x):
        return self.body(x)


class Wave(nn.Module):
    """sin(scale * x): a layer whose output changes sign many times across any varied input."""

    def __init__(self, scale=20.0):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return torch.sin(self.scale * x)


class WavyMLP(nn.Module):
    """Untrained classifier whose predicted class varies across varied rows of any width.

    For the common checks of DNRDetector, which fits on the network's own predictions:
    a random LazyMLP often predicts one class for every row of the checks' data.
    """

    def __init__(self, n_classes=3, hidden=8, seed=0):
        super().__init__()
        # Its eager weights come from its own seed, not from the global RNG's state when the test
        # modules are imported (which depends on what was collected before): otherwise some
        # orders of the suite built a network predicting only two classes on the checks' rows.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.body = nn.Sequential(nn.Flatten(), nn.LazyLinear(hidden), Wave(), nn.Linear(hidden, n_classes))

    def forward(self, x):
        return self.body(x)


def seeded_mlp(n_features=64, n_classes=10, hidden=32, seed=0):
    """An untrained Flatten-Linear-ReLU-Linear classifier (layers "1" to "3"), its weights seeded."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


def fit_classifier(module, X, y, *, epochs, lr, seed=0):
    """Train ``module`` (returning logits) with skorch: full-batch Adam on cross-entropy.

    Returns the fitted ``NeuralNetClassifier``; its ``module_`` is ``module`` trained
    (the same object when an instance is passed; a class is instantiated under ``seed``),
    left in eval mode.
    """
    from skorch import NeuralNetClassifier

    from skadv._core import TensorBatches

    torch.manual_seed(seed)
    net = NeuralNetClassifier(
        module,
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=lr,
        max_epochs=epochs,
        batch_size=-1,
        train_split=None,
        # skorch's default DataLoader fetches and collates rows one at a time, which costs
        # more than a step of these tiny models; skadv's own nets use this iterator too.
        iterator_train=TensorBatches,
        verbose=0,
    )
    net.fit(np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.int64))
    net.module_.eval()
    return net
