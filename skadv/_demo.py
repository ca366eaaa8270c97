"""The end-to-end demo on ``load_digits`` behind ``python -m skadv demo``."""

import os
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from torch import nn

from ._distillation import ModelDistillationDetector
from ._harm import harmfulness, ks_drift_test
from .corruptions import corrupt


class DigitsCNN(nn.Module):
    """Small CNN for 8×8 digits: conv(16) → conv(32) → linear(64) → 10 logits."""

    def __init__(self, n_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, n_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def load_digits_images(random_state=0):
    """Digits scaled to [0, 1] as rows of 64 values, split 70 / 30 stratified."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=random_state)


def train_classifier(X, y, epochs, random_state=0, verbose=True):
    """Train :class:`DigitsCNN` through skorch on rows reshaped to (1, 8, 8)."""
    from skorch import NeuralNetClassifier

    torch.manual_seed(random_state)
    net = NeuralNetClassifier(
        DigitsCNN, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=2e-3,
        max_epochs=epochs, batch_size=64, train_split=None, iterator_train__shuffle=True,
        verbose=int(verbose),
    )
    net.fit(X.reshape(-1, 1, 8, 8), y.astype(np.int64))
    return net


def _section(title):
    print(f"\n== {title} " + "=" * max(0, 60 - len(title)), flush=True)


def run_demo(out_dir="skadv_demo", quick=False, random_state=0):
    """Train a classifier on digits, corrupt/attack it and evaluate skadv's detectors.

    Prints one table and writes figures into ``out_dir``.
    """
    start = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    X_train, X_test, y_train, y_test = load_digits_images(random_state)
    epochs = 8 if quick else 25

    _section(f"classifier: small CNN on load_digits ({len(X_train)} train / {len(X_test)} test), skorch")
    net = train_classifier(X_train, y_train, epochs, random_state)
    cnn = net.module_.eval()
    predict = lambda X: net.predict(X.reshape(-1, 1, 8, 8))  # noqa: E731
    pred_clean = predict(X_test)
    print(f"clean test accuracy: {np.mean(pred_clean == y_test):.3f}")

    rows = []

    _section("ModelDistillationDetector: harmful corruptions")
    det = ModelDistillationDetector(cnn, input_shape=(1, 8, 8), epochs=10 if quick else 30,
                                    random_state=random_state).fit(X_train)
    reference = det.adversarial_score(X_test)
    for kind in ("gaussian_noise", "gaussian_blur", "pixelate"):
        X_bad = corrupt(X_test, kind, severity=5, random_state=random_state).astype(np.float32)
        harm = harmfulness(y_test, pred_clean, predict(X_bad))
        scores = det.adversarial_score(X_bad)
        rows_defined = harm.harmful | harm.harmless
        auroc = (
            roc_auc_score(harm.harmful[rows_defined], scores[rows_defined])
            if harm.harmful.any() and harm.harmless.any() else float("nan")
        )
        drift = ks_drift_test(reference, scores)
        print(f"{kind:15s} harmful {harm.harmful.sum():3d}  harmless {harm.harmless.sum():3d}  "
              f"AUROC harmful vs harmless {auroc:.3f}  batch drift p={drift.p_value:.2g}")
        rows.append(("ModelDistillation", kind, auroc))

    _section("summary")
    print(f"{'detector':20s} {'input':16s} {'AUROC':>6s}")
    for name, kind, auroc in rows:
        print(f"{name:20s} {kind:16s} {auroc:6.3f}")
    print(f"\nfinished in {time.perf_counter() - start:.0f} s; figures in {os.path.abspath(out_dir)}")
    return rows
