"""The end-to-end demo on ``load_digits`` behind ``python -m skadv demo``."""

import os
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


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
    print(f"\n== {title} " + "=" * max(0, 66 - len(title)), flush=True)


def _fit_detectors(cnn, X_fit, y_fit, X_val, quick, random_state):
    """The four detectors, fitted on clean data, thresholds at 5 % FPR on clean validation rows."""
    from . import AdversarialAEDetector, DeepNeuralRejection, ModelDistillationDetector, VAEDetector

    common = {"input_shape": (1, 8, 8), "random_state": random_state}
    detectors = {
        "AdversarialAE": AdversarialAEDetector(cnn, epochs=5 if quick else 30, temperature=0.5, **common),
        "ModelDistillation": ModelDistillationDetector(cnn, epochs=8 if quick else 30, **common),
        "VAE": VAEDetector(cnn, epochs=15 if quick else 60, **common),
        "DNR": DeepNeuralRejection(
            cnn, layers=["features.1", "features.4", "classifier.2"], cv=3 if quick else 5, n_jobs=1, **common
        ),
    }
    for name, det in detectors.items():
        start = time.perf_counter()
        det.fit(X_fit, y_fit)  # the detectors ignore y; DNR learns from it
        det.infer_threshold(X_val, threshold_perc=95)  # the same call, and meaning, for every detector
        print(f"{name:18s} fitted in {time.perf_counter() - start:5.1f} s", flush=True)
    return detectors


def _evaluate(det, X_clean, X_adv, y):
    from .metrics import (
        accuracy_with_rejection,
        adversarial_scores,
        deployed_predictions,
        detection_auroc,
        detection_threshold,
        tpr_at_threshold,
    )

    clean_scores, adv_scores = adversarial_scores(det, X_clean), adversarial_scores(det, X_adv)
    attacked = deployed_predictions(det, X_adv)
    threshold = detection_threshold(det)
    row = {
        "auroc": detection_auroc(clean_scores, adv_scores),
        # At the detector's fixed threshold (5 % FPR on clean validation rows), not re-read off a ROC.
        "tpr5": tpr_at_threshold(adv_scores, np.inf if threshold is None else threshold),
        "no_defense": float(np.mean(attacked.classifier_labels == y)),
        "with_detection": accuracy_with_rejection(y, attacked.labels, rejected=attacked.flagged, attacked=True),
        "corrected": float(np.mean(det.correct(X_adv).corrected == y)) if hasattr(det, "correct") else None,
    }
    return row


def run_demo(out_dir="skadv_demo", quick=False, random_state=0):
    """Train a classifier on digits, attack it, and evaluate skadv's four detectors.

    Prints one table (detection AUROC, TPR at 5 % FPR, accuracy without defense, with
    detection and corrected) for non-adaptive and adaptive attacks, and writes PNG figures
    into ``out_dir``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .attacks import FGSM, PGD, PGDLineSearch
    from .plotting import (
        AttackTraceDisplay,
        DistinctLabelsDisplay,
        ScoreHistogramDisplay,
        SecurityEvaluationDisplay,
    )

    start = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(random_state)
    X_train, X_test, y_train, y_test = load_digits_images(random_state)
    X_fit, X_val, y_fit, _ = train_test_split(X_train, y_train, test_size=0.2, stratify=y_train,
                                              random_state=random_state)
    n_eval = 100 if quick else len(X_test)
    X_eval, y_eval = X_test[:n_eval], y_test[:n_eval]
    pgd_steps = 10 if quick else 40
    pgd_step = 0.05 if quick else 0.01  # quick: Madry's 2.5 * eps / steps; full: 40 steps of 0.01

    _section(f"classifier: small CNN on load_digits, trained through skorch ({len(X_fit)} rows)")
    net = train_classifier(X_fit, y_fit, epochs=8 if quick else 25, random_state=random_state)
    cnn = net.module_.eval()

    def predict_classifier(X):
        return net.predict(np.asarray(X, dtype=np.float32).reshape(-1, 1, 8, 8))

    print(f"clean test accuracy: {np.mean(predict_classifier(X_test) == y_test):.3f}")

    _section("detectors: fit on clean data, threshold at 5 % false positives on clean validation rows")
    detectors = _fit_detectors(cnn, X_fit, y_fit, X_val, quick, random_state)

    _section(f"attacks on {n_eval} test digits")
    shape = {"input_shape": (1, 8, 8)}
    attacks = {
        "FGSM eps=0.1": FGSM(cnn, eps=0.1, **shape).generate(X_eval, y_eval),
        "PGD eps=0.2": PGD(cnn, eps=0.2, step_size=pgd_step, max_iter=pgd_steps, random_state=random_state,
                           **shape).generate(X_eval, y_eval),
    }
    for name, X_adv in attacks.items():
        print(f"{name:14s} classifier accuracy {np.mean(predict_classifier(X_adv) == y_eval):.3f}")

    rows = []
    for det_name, det in detectors.items():
        runs = dict(attacks)
        # Adaptive: the attack sees classifier and detector together (Carlini & Wagner 2017).
        runs["PGD eps=0.2 adaptive"] = PGD(det, eps=0.2, step_size=pgd_step, max_iter=pgd_steps,
                                           random_state=random_state, eot_samples=2 if quick else 4
                                           ).generate(X_eval, y_eval)
        for attack_name, X_adv in runs.items():
            rows.append((det_name, attack_name, _evaluate(det, X_eval, X_adv, y_eval)))
        print(f"{det_name:18s} evaluated ({time.perf_counter() - start:5.0f} s so far)", flush=True)

    _section("results (positives: all attacked inputs; thresholds fixed before attacking)")
    header = f"{'detector':18s} {'attack':22s} {'AUROC':>6s} {'TPR@5%':>7s} {'no def.':>8s} {'w/ det.':>8s} {'corr.':>6s}"
    print(header)
    print("-" * len(header))
    for det_name, attack_name, r in rows:
        corrected = "" if r["corrected"] is None else f"{r['corrected']:.3f}"
        print(f"{det_name:18s} {attack_name:22s} {r['auroc']:6.3f} {r['tpr5']:7.3f} {r['no_defense']:8.3f} "
              f"{r['with_detection']:8.3f} {corrected:>6s}")
    print("no def.: classifier accuracy on attacked inputs; w/ det.: attacked input defended if flagged or "
          "classified correctly;\ncorr.: accuracy of the detector's correct() (reconstruction's label where flagged)")

    _section("figures")
    written = []

    def save(fig, filename):
        path = os.path.join(out_dir, filename)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    fig, axes = plt.subplots(1, len(detectors), figsize=(4.2 * len(detectors), 3.4))
    for ax, (det_name, det) in zip(axes, detectors.items()):
        # Each detector's own threshold, on the plotted scale; log axes for scores piled up near 0.
        ScoreHistogramDisplay.from_estimator(
            det, X_eval, attacks["PGD eps=0.2"], name=det_name, log_scale="auto", ax=ax
        )
    fig.suptitle("Adversarial scores: clean vs PGD eps=0.2 (non-adaptive)")
    save(fig, "score_histograms.png")

    eps_values = [0.0, 0.1, 0.2] if quick else [0.0, 0.05, 0.1, 0.15, 0.2, 0.3]
    n_sec = 40 if quick else 200
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, det_name in zip(axes, ("AdversarialAE", "ModelDistillation")):
        SecurityEvaluationDisplay.from_estimator(
            detectors[det_name], PGD, X_eval[:n_sec], y_eval[:n_sec], eps_values, name=det_name, ax=ax,
            step_size=pgd_step, max_iter=pgd_steps, random_state=random_state,
        )
        ax.set_title(f"{det_name}: adaptive PGD")
    save(fig, "security_evaluation.png")

    dnr = detectors["DNR"]
    trace = AttackTraceDisplay.from_attack(
        PGDLineSearch(dnr, eps=2.0, max_iter=30 if quick else 60), X_eval, y_eval, sample_index=0,
        image_shape=(8, 8),
    )
    trace.figure_.suptitle("Adaptive PGD with line search against DNR (one digit)")
    save(trace.figure_, "attack_trace_dnr.png")

    vae_display = DistinctLabelsDisplay.from_estimator(
        detectors["VAE"], X_eval, attacks["PGD eps=0.2"], names=("clean", "PGD eps=0.2")
    )
    vae_display.ax_.set_title("VAE: distinct labels over sampled reconstructions")
    save(vae_display.figure_, "vae_distinct_labels.png")

    for path in written:
        print(path)
    print(f"\nfinished in {time.perf_counter() - start:.0f} s")
    return rows
