"""Tiny torch models shared by the tests."""

import torch
from torch import nn


class LazyMLP(nn.Module):
    """Classifier that adapts to any input width (for sklearn's common checks)."""

    def __init__(self, n_classes=3, hidden=8):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.LazyLinear(hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, x):
        return self.body(x)


def digits_mlp(n_features=64, n_classes=10, hidden=32, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))
