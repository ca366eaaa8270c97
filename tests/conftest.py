import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from _attack_helpers import digits_data
from _models import seeded_mlp

# The script that wrote the legacy-file fixtures runs against an old release, not under pytest.
collect_ignore_glob = ["fixtures/*"]


@pytest.fixture(scope="session")
def digits():
    """load_digits scaled to [0, 1], split 1200 train / rest test."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return X[:1200], y[:1200], X[1200:], y[1200:]


@pytest.fixture(scope="session")
def shuffled_digits():
    """Shuffled digits: 1000 training and 300 test rows, as ((X, y), (X_test, y_test))."""
    return digits_data(n_train=1000, n_test=300)


@pytest.fixture(scope="session")
def digits_skorch_clf(digits):
    """A fitted skorch NeuralNetClassifier (MLP 64-32-10, returns probabilities)."""
    from skorch import NeuralNetClassifier

    X_train, y_train, _, _ = digits

    class SoftmaxMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = seeded_mlp()

        def forward(self, x):
            return torch.softmax(self.net(x), dim=1)

    torch.manual_seed(0)
    clf = NeuralNetClassifier(SoftmaxMLP, max_epochs=30, lr=0.01, optimizer=torch.optim.Adam,
                              train_split=None, iterator_train__shuffle=True, verbose=0)
    return clf.fit(X_train, y_train.astype(np.int64))
