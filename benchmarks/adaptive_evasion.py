"""Evasion of the demo's four detectors: AutoAttack ensemble vs the demo's adaptive PGD.

Builds the demo's digits CNN and detectors exactly as ``python -m skadv demo`` does
(thresholds at 5 % false positives on held-out clean validation rows), attacks the first
``--n`` test digits at each eps (L-inf) and prints one JSON object. Evasion = share of
attacked rows that are misclassified by the deployed system and not flagged / rejected,
at the fixed threshold; ``clean_fpr`` is the share of clean evaluated rows flagged.

    python benchmarks/adaptive_evasion.py [--n 300] [--eps 0.1 0.2] [--threads 2]
"""

import argparse
import json
import time
import warnings

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from skadv import (
    AdversarialAEDetector,
    DeepNeuralRejection,
    ModelDistillationDetector,
    VAEDetector,
)
from skadv.attacks import PGD, AttackFailureWarning, AutoAttack
from skadv.datasets import load_digits8, make_digits_classifier
from skadv.metrics import deployed_predictions, evasion_rate


def _fit_detectors(cnn, X_fit, y_fit, X_val, random_state):
    """The demo's four detectors with its full settings, thresholds at 5 % FPR on held-out clean rows."""
    common = {"input_shape": (1, 8, 8), "random_state": random_state}
    detectors = {
        "AdversarialAE": AdversarialAEDetector(cnn, epochs=30, temperature=0.5, **common).fit(X_fit),
        "ModelDistillation": ModelDistillationDetector(cnn, epochs=30, **common).fit(X_fit),
        "VAE": VAEDetector(cnn, epochs=60, **common).fit(X_fit),
        "DNR": DeepNeuralRejection(
            cnn, layers=["features.1", "features.4", "classifier.2"], cv=5, n_jobs=1, **common
        ).fit(X_fit, y_fit),
    }
    for det in detectors.values():
        det.infer_threshold(X_val, threshold_perc=95)
    return detectors


def _deployed_evasion(det, X_adv, y):
    pred = deployed_predictions(det, X_adv)
    return evasion_rate(y, pred.labels, rejected=pred.flagged)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.2])
    parser.add_argument("--detectors", nargs="+", default=["DNR", "AdversarialAE", "ModelDistillation", "VAE"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seed = args.random_state

    start = time.perf_counter()
    torch.manual_seed(seed)
    X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=seed)
    X_fit, X_val, y_fit, _ = train_test_split(X_train, y_train, test_size=0.2, stratify=y_train, random_state=seed)
    net = make_digits_classifier(X_fit, y_fit, epochs=25, random_state=seed)
    cnn = net.module_.eval()
    detectors = _fit_detectors(cnn, X_fit, y_fit, X_val, random_state=seed)
    setup_s = time.perf_counter() - start
    X_eval, y_eval = X_test[: args.n], y_test[: args.n]

    results = {}
    for name in args.detectors:
        det = detectors[name]
        row = {"clean_fpr": float(np.mean(det.predict(X_eval) == -1))}
        for eps in args.eps:
            t0 = time.perf_counter()
            # The demo's adaptive PGD: 40 steps of 0.01, random start, EOT 4.
            pgd = PGD(det, eps=eps, step_size=0.01, max_iter=40, random_state=seed, eot_samples=4)
            X_pgd = pgd.generate(X_eval, y_eval)
            t1 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", AttackFailureWarning)
                auto = AutoAttack(det, eps=eps, random_state=seed, eot_samples=4).run(X_eval, y_eval)
            t2 = time.perf_counter()
            row[f"eps={eps}"] = {
                "pgd_evasion": _deployed_evasion(det, X_pgd, y_eval),
                "autoattack_evasion": _deployed_evasion(det, auto.X_adv, y_eval),
                "autoattack_success_own_judge": float(auto.success.mean()),
                "broken_by": {m: int(b.n_broken) for m, b in auto.members.items()},
                "checks_fired": [n for n, c in auto.checks.items() if c.fired],
                "warnings": len(caught),
                "pgd_s": round(t1 - t0, 1),
                "autoattack_s": round(t2 - t1, 1),
            }
            print(json.dumps({name: {f"eps={eps}": row[f"eps={eps}"]}}), flush=True)
        results[name] = row
    print(json.dumps({"n_rows": len(X_eval), "setup_s": round(setup_s, 1), "threads": args.threads,
                      "total_s": round(time.perf_counter() - start, 1), "results": results}, indent=1))


if __name__ == "__main__":
    main()
