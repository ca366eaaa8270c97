"""A user's own model classes, for the persistence tests.

Importable only through the ``sys.path`` entry those tests add (this folder), so a
process that loads a saved detector has not imported it before loading.
"""

import torch
from torch import nn

#: What PropertyNet's setter was called with (it must never run while loading).
SETTER_CALLS = []


class MyNet(nn.Module):
    """MLP classifier returning logits, with its own forward."""

    def __init__(self, n_features=64, n_classes=10, hidden=16):
        super().__init__()
        self.hidden = nn.Linear(n_features, hidden)
        self.out = nn.Linear(hidden, n_classes)
        self.scale = 1.0

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x.flatten(1)))) * self.scale


class MyEncoder(nn.Module):
    """Encoder half of a user's autoencoder (or of a VAE, with ``n_out = 2 * latent_dim``)."""

    def __init__(self, n_features=64, n_out=8):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(n_features, 16), nn.ReLU(), nn.Linear(16, n_out))

    def forward(self, x):
        return self.body(x)


class MyDecoder(nn.Module):
    """Decoder half: latent codes back to rows in [0, 1]."""

    def __init__(self, n_latent=8, n_features=64):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_latent, 16), nn.ReLU(), nn.Linear(16, n_features), nn.Sigmoid())

    def forward(self, z):
        return self.body(z)


class PropertyNet(nn.Module):
    """A module whose attribute setter has a side effect."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    @property
    def gain(self):
        return self.__dict__.get("gain", 1.0)

    @gain.setter
    def gain(self, value):
        SETTER_CALLS.append(value)
        self.__dict__["gain"] = value

    def forward(self, x):
        return self.lin(x) * self.gain
