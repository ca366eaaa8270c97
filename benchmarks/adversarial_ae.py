"""Benchmark: AdversarialAEDetector against the same computation as a bare torch loop.

Fixed digits workload: classifier 64-128-10, autoencoder 64-128-32 / 32-128-64, KL loss,
20 epochs of Adam (lr 1e-3) in batches of 64 over the 1797 digits, threshold from the
training scores; then adversarial scores of 100,000 rows: skadv at the detector's default
scoring parameters (``inference_batch_size=None``: as many rows per batch as its memory
budget allows), the bare loop in batches of 1024 (``--score-batch`` to change), once with its
softmax and KL in float32 and once in float64 (skadv's scores are float64). Prints JSON
with the fit seconds and scoring rows/s of each, and their ratios (skadv / bare for fit
time, skadv / bare for throughput, against either bare loop). Each timing is the best of several interleaved runs
(the minimum is the timing least disturbed by other load on the machine).

    python benchmarks/adversarial_ae.py [--fit-repeats 3] [--score-repeats 15] [--score-batch 1024] [--threads N]
"""

import argparse
import copy
import json
import platform
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import skadv
from skadv import AdversarialAEDetector

EPOCHS, TRAIN_BATCH, SCORE_BATCH, N_SCORE, LR, CONTAMINATION = 20, 64, 1024, 100_000, 1e-3, 0.05


def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


def train_classifier(X, y):
    torch.manual_seed(0)
    clf = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(clf.parameters(), lr=0.01)
    x, t = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(100):
        optimizer.zero_grad()
        nn.functional.cross_entropy(clf(x), t).backward()
        optimizer.step()
    return clf.eval()


def make_autoencoder():
    return nn.Sequential(
        nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32)),
        nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 64)),
    )


def kl_score(classifier, ae, x, dtype=torch.float32):
    """KL(M(x) ‖ M(AE(x))) per row, one classifier pass over x and AE(x) stacked, the softmax in ``dtype``."""
    n_rows = len(x)
    log_proba = torch.log_softmax(classifier(torch.cat([x, ae(x)])).to(dtype), dim=1)
    log_p, log_q = log_proba[:n_rows], log_proba[n_rows:]
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


class BareTorchDetector:
    """The same detector as a hand-written loop: what skadv's overhead is measured against."""

    def __init__(self, classifier, score_batch=SCORE_BATCH):
        self.classifier = classifier
        self.score_batch = score_batch
        self.score_dtype = torch.float32

    def fit(self, X):
        torch.manual_seed(0)
        classifier = copy.deepcopy(self.classifier).eval().requires_grad_(False)
        ae = make_autoencoder()
        optimizer = torch.optim.Adam(ae.parameters(), lr=LR)
        x_all = torch.from_numpy(X)
        generator = torch.Generator().manual_seed(0)
        for _ in range(EPOCHS):
            ae.train()
            for rows in torch.randperm(len(x_all), generator=generator).split(TRAIN_BATCH):
                loss = kl_score(classifier, ae, x_all[rows]).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        self.classifier_, self.ae_ = classifier, ae.eval()
        self.threshold_ = float(np.percentile(self.score(X), 100 * (1 - CONTAMINATION)))
        return self

    def score(self, X):
        x_all = torch.from_numpy(X)
        with torch.inference_mode():
            return torch.cat(
                [kl_score(self.classifier_, self.ae_, x, self.score_dtype) for x in x_all.split(self.score_batch)]
            ).double().numpy()


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit-repeats", type=int, default=3)
    parser.add_argument("--score-repeats", type=int, default=15)
    parser.add_argument("--score-batch", type=int, default=SCORE_BATCH, help="the bare loop's scoring batch")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    X, y = digits()
    classifier = train_classifier(X, y)
    X_score = np.resize(X, (N_SCORE, X.shape[1]))  # the digits tiled to 100k rows

    def fit_skadv():
        torch.manual_seed(0)  # the same initial autoencoder as the bare loop's
        return AdversarialAEDetector(
            classifier,
            ae=make_autoencoder(),
            epochs=EPOCHS,
            batch_size=TRAIN_BATCH,
            lr=LR,
            contamination=CONTAMINATION,
            random_state=0,
        ).fit(X)

    def fit_bare():
        return BareTorchDetector(classifier, args.score_batch).fit(X)

    # Interleave the two so that load on a shared machine hits both alike.
    skadv_fit, bare_fit = [], []
    for _ in range(args.fit_repeats):
        skadv_fit.append(best_time(fit_skadv, 1))
        bare_fit.append(best_time(fit_bare, 1))
    skadv_fit_s, detector = min(skadv_fit, key=lambda r: r[0])
    bare_fit_s, bare = min(bare_fit, key=lambda r: r[0])

    # The same loop with the softmax and KL in float64, as skadv computes its scores (a float32
    # KL is off by up to a few 1e-6, a large share of clean rows' scores): the same score,
    # written plainly in torch.
    bare64 = copy.copy(bare)
    bare64.score_dtype = torch.float64

    # Scored at the detector's default inference_batch_size (None): no set_params here.
    skadv_score, bare_score, bare64_score = [], [], []
    for _ in range(args.score_repeats):
        skadv_score.append(best_time(lambda: detector.adversarial_score(X_score), 1))
        bare_score.append(best_time(lambda: bare.score(X_score), 1))
        bare64_score.append(best_time(lambda: bare64.score(X_score), 1))
    skadv_score_s, scores = min(skadv_score, key=lambda r: r[0])
    bare_score_s, bare_scores = min(bare_score, key=lambda r: r[0])
    bare64_score_s = min(bare64_score, key=lambda r: r[0])[0]

    report = {
        "benchmark": "adversarial_ae",
        "workload": {
            "data": "sklearn digits (1797 x 64, /16)",
            "classifier": "64-128-10",
            "autoencoder": "64-128-32 / 32-128-64",
            "epochs": EPOCHS,
            "train_batch_size": TRAIN_BATCH,
            "score_rows": N_SCORE,
            "score_batch_size": {"skadv": detector._inference_batch_size(), "bare_torch": args.score_batch},
        },
        "skadv": {"fit_seconds": round(skadv_fit_s, 4), "score_rows_per_second": round(N_SCORE / skadv_score_s)},
        "bare_torch": {"fit_seconds": round(bare_fit_s, 4), "score_rows_per_second": round(N_SCORE / bare_score_s)},
        "fit_time_ratio": round(skadv_fit_s / bare_fit_s, 3),
        "bare_torch_float64_kl": {"score_rows_per_second": round(N_SCORE / bare64_score_s)},
        "score_throughput_ratio": round(bare_score_s / skadv_score_s, 3),
        "score_throughput_ratio_vs_float64_kl": round(bare64_score_s / skadv_score_s, 3),
        "targets": {"fit_time_ratio_max": 1.5, "score_throughput_ratio_min": 0.9},
        "mean_training_score": {
            "skadv": round(float(scores[: len(X)].mean()), 5),
            "bare_torch": round(float(bare_scores[: len(X)].mean()), 5),
        },
        "repeats": {"fit": args.fit_repeats, "score": args.score_repeats},
        "torch_threads": torch.get_num_threads(),
        "versions": {"skadv": skadv.__version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
