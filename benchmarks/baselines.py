"""Benchmark: the baseline detectors against the classifier's own max-softmax (MSP) on digits.

Workload: load_digits scaled to [0, 1], stratified 70/30 split (seed ``--random-state``);
the MLP 64-128-10 of ``benchmarks/adversarial_ae.py`` (full-batch Adam, lr 0.01, 100
steps) trained on the training rows, behind a Flatten so that it takes images too (or,
with ``--model cnn``, ``skadv.datasets.make_digits_classifier``'s CNN); each
detector fitted on the training rows; non-adaptive L-inf PGD (eps 0.2, 40 steps of 0.01,
random start) against the classifier on the test rows. Prints one JSON object:
per detector variant, the detection AUROC of clean test rows vs all attacked rows and vs
the successful ones only, and AUROC minus MSP's. With ``--adaptive`` it also attacks
each detector adaptively (the same PGD through its "flagged" output, threshold at 5 %
false positives on the clean training rows) and reports the evasion rate (the share of
attacked rows misclassified and not flagged) of the adaptive and non-adaptive rows. An
adaptive evasion below the non-adaptive one means the adaptive attack failed.

    python benchmarks/baselines.py [--model mlp|cnn] [--random-state 0] [--adaptive] [--threads 2]
"""

import argparse
import json
import time

import numpy as np
import torch
from adversarial_ae import train_classifier
from torch import nn

from skadv import ConfidenceDetector, FeatureSqueezingDetector, MahalanobisDetector
from skadv.attacks import PGD
from skadv.datasets import load_digits8, make_digits_classifier
from skadv.metrics import detection_auroc


def variants(clf):
    """Detector variants by name: defaults first, then settings from the papers."""
    image = {"input_shape": (1, 8, 8)}
    return {
        "msp": ConfidenceDetector(clf),
        "entropy": ConfidenceDetector(clf, score_type="entropy"),
        "energy": ConfidenceDetector(clf, score_type="energy"),
        "odin_T1000_eps0.01": ConfidenceDetector(clf, temperature=1000, odin_eps=0.01),
        "mahalanobis": MahalanobisDetector(clf),
        "mahalanobis_empirical": MahalanobisDetector(clf, covariance="empirical"),
        "mahalanobis_penultimate": MahalanobisDetector(clf, layers=(-2,)),
        "mahalanobis_noise0.01": MahalanobisDetector(clf, noise_eps=0.01),
        "squeezing": FeatureSqueezingDetector(clf, **image),
        **{
            f"squeezing_bits{bits}": FeatureSqueezingDetector(clf, squeezers=["bit_depth"], bit_depth=bits, **image)
            for bits in (2, 3, 4, 5)
        },
        "squeezing_bits1_median2": FeatureSqueezingDetector(clf, squeezers=["bit_depth", "median"], **image),
        "squeezing_median2": FeatureSqueezingDetector(clf, squeezers=["median"], **image),
        "squeezing_median3": FeatureSqueezingDetector(clf, squeezers=["median"], median_size=3, **image),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--adaptive", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seed = args.random_state

    X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=seed)
    if args.model == "mlp":
        # A Flatten in front: the image squeezers hand it (n, 1, 8, 8) batches.
        clf = nn.Sequential(nn.Flatten(), train_classifier(X_train, y_train))
    else:
        clf = make_digits_classifier(X_train, y_train, random_state=seed).module_
    with torch.no_grad():
        clean_accuracy = float((clf(torch.from_numpy(X_test)).argmax(1).numpy() == y_test).mean())
    pgd = {"eps": 0.2, "step_size": 0.01, "max_iter": 40, "random_state": seed}
    X_adv = PGD(clf, **pgd).generate(X_test, y_test)
    with torch.no_grad():
        fooled = clf(torch.from_numpy(X_adv)).argmax(1).numpy() != y_test

    results = {}
    for name, det in variants(clf).items():
        start = time.perf_counter()
        det.fit(X_train)
        fit_s = time.perf_counter() - start
        clean, attacked = det.adversarial_score(X_test), det.adversarial_score(X_adv)
        row = {
            "auroc": round(detection_auroc(clean, attacked), 4),
            "auroc_successful": round(detection_auroc(clean, attacked[fooled]), 4),
            "fit_s": round(fit_s, 2),
        }
        if args.adaptive:
            det.infer_threshold(X_train, threshold_perc=95)
            row["nonadaptive_evasion"] = round(float(np.mean(fooled & (det.predict(X_adv) == 1))), 4)
            X_adaptive = PGD(det, **pgd).generate(X_test, y_test)
            with torch.no_grad():
                wrong = clf(torch.from_numpy(X_adaptive)).argmax(1).numpy() != y_test
            row["adaptive_evasion"] = round(float(np.mean(wrong & (det.predict(X_adaptive) == 1))), 4)
        results[name] = row
        print(json.dumps({name: row}), flush=True)
    for row in results.values():
        row["auroc_minus_msp"] = round(row["auroc"] - results["msp"]["auroc"], 4)
    print(json.dumps({
        "workload": f"digits {args.model}, non-adaptive PGD Linf eps=0.2 (40 x 0.01, random start)",
        "clean_accuracy": clean_accuracy,
        "attack_success": float(fooled.mean()),
        "n_test": len(X_test),
        "random_state": seed,
        "threads": args.threads,
        "results": results,
    }, indent=1))


if __name__ == "__main__":
    main()
