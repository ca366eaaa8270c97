"""Tiny models trained in-process for the attack, metric and plotting tests."""

import numpy as np
import torch
from sklearn.datasets import load_digits

from _models import fit_classifier


def digits_data(n_train=1000, n_test=200):
    """Digits scaled to [0, 1] as float32, split into train and test."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    rng = np.random.RandomState(0)
    order = rng.permutation(len(X))
    X, y = X[order], y[order]
    return (X[:n_train], y[:n_train]), (X[n_train : n_train + n_test], y[n_train : n_train + n_test])


def train_module(module, X, y, *, n_steps=150, lr=0.05, seed=0):
    """Full-batch Adam on cross-entropy through skorch (one step an epoch); returns the module in eval mode."""
    return fit_classifier(module, X, y, epochs=n_steps, lr=lr, seed=seed).module_


def train_mlp(X, y, hidden=32, seed=0, n_steps=150):
    """A Linear-ReLU-Linear classifier trained on (X, y); the module, in eval mode."""
    torch.manual_seed(seed)
    module = torch.nn.Sequential(
        torch.nn.Linear(X.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
    )
    return train_module(module, X, y, n_steps=n_steps, seed=seed)


def train_linear(X, y, seed=0):
    """A linear classifier trained on (X, y); the module, in eval mode."""
    torch.manual_seed(seed)
    return train_module(torch.nn.Linear(X.shape[1], 10), X, y, n_steps=150, seed=seed)


def accuracy(module, X, y):
    with torch.no_grad():
        return float((module(torch.as_tensor(X, dtype=torch.float32)).argmax(1).numpy() == y).mean())


class SurfaceView:
    """An estimator seen only through ``attack_surface()`` (not a skadv class), with its forward wrapped.

    ``wrap(forward)`` returns the new forward; ``changes`` replace further fields of the surface.
    Tests use it to mask or count the adaptive forward of a fitted detector.
    """

    def __init__(self, estimator, wrap=None, **changes):
        self.estimator, self.wrap, self.changes = estimator, wrap, changes

    def attack_surface(self):
        import dataclasses

        surface = self.estimator.attack_surface()
        forward = surface.forward if self.wrap is None else self.wrap(surface.forward)
        return dataclasses.replace(surface, forward=forward, **self.changes)
