"""VAEDetector on digits: detection of PGD (plain and adaptive), OOD noise, purification. Prints JSON.

Protocol: the threshold is fixed on clean validation rows (5 % FPR) before
attacking; positives are all attacked test rows (and, separately, only the successful
ones). Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_vae.py``.
"""

import json
import time

import numpy as np
import torch
from sklearn.datasets import load_digits

from skadv import VAEDetector
from skadv.attacks import PGD
from skadv.metrics import accuracy_with_rejection, detection_auroc, tpr_at_fpr


def train_classifier(X, y, seed=0):
    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.Adam(module.parameters(), lr=0.05)
    X_t, y_t = torch.as_tensor(X), torch.as_tensor(y)
    for _ in range(150):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(module(X_t), y_t).backward()
        optimizer.step()
    return module.eval()


def detection(det, X_val, X_test, y_test, X_adv, clf):
    det.infer_threshold(X_val, threshold_perc=95)
    s_clean, s_adv = det.adversarial_score(X_test), det.adversarial_score(X_adv)
    with torch.no_grad():
        pred_adv = clf(torch.as_tensor(X_adv)).argmax(1).numpy()
    success = pred_adv != y_test
    flagged = s_adv > det.threshold_
    out = {
        "auroc_all": detection_auroc(s_clean, s_adv),
        "tpr_at_5fpr_all": tpr_at_fpr(s_clean, s_adv, 0.05),
        "flagged_at_val_threshold": float(flagged.mean()),
        "clean_fpr_at_val_threshold": float((s_clean > det.threshold_).mean()),
    }
    if success.any():
        out["auroc_successful"] = detection_auroc(s_clean, s_adv[success])
    out["accuracy_with_rejection_attacked"] = accuracy_with_rejection(
        y_test, pred_adv, rejected=flagged, attacked=True
    )
    return out


def main():
    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    order = np.random.RandomState(0).permutation(len(X))
    X, y = X[order], y[order]
    X_train, X_val, X_test, y_test = X[:1000], X[1000:1300], X[1300:1600], y[1300:1600]
    clf = train_classifier(X_train, y[:1000])
    with torch.no_grad():
        clean_accuracy = float((clf(torch.as_tensor(X_test)).argmax(1).numpy() == y_test).mean())

    t0 = time.perf_counter()
    det = VAEDetector(clf, random_state=0).fit(X_train)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    det.adversarial_score(X_test)
    score_ms_per_row = 1000 * (time.perf_counter() - t0) / len(X_test)

    results = {
        "dataset": "digits 8x8 (/16), train 1000 / val 300 / test 300",
        "classifier": "MLP 64-64-10",
        "clean_accuracy": clean_accuracy,
        "detector": {
            "latent_dim": det.latent_dim,
            "n_samples": det.n_samples,
            "epochs": det.epochs,
            "beta": det.beta,
        },
        "fit_seconds": fit_s,
        "score_ms_per_row": score_ms_per_row,
        "attacks": {},
    }
    for eps in (0.1, 0.2, 0.3):
        attack = PGD(clf, norm=np.inf, eps=eps, step_size=0.01, max_iter=40, random_state=0)
        X_adv = attack.generate(X_test, y_test)
        with torch.no_grad():
            adv_accuracy = float((clf(torch.as_tensor(X_adv)).argmax(1).numpy() == y_test).mean())
        entry = {"classifier_accuracy": adv_accuracy}
        for score_type, consistency in (
            ("consistency", "kl"),
            ("consistency", "disagreement"),
            ("reconstruction", "kl"),
            ("combined", "kl"),
        ):
            det.set_params(score_type=score_type, consistency=consistency)
            name = f"consistency_{consistency}" if score_type == "consistency" else score_type
            entry[name] = detection(det, X_val, X_test, y_test, X_adv, clf)
        det.set_params(score_type="consistency", consistency="kl")
        entry["distinct_labels_auroc"] = detection_auroc(
            det.distinct_labels(X_test), det.distinct_labels(X_adv)
        )
        entry["distinct_labels_mean"] = {
            "clean": float(det.distinct_labels(X_test).mean()),
            "attacked": float(det.distinct_labels(X_adv).mean()),
        }
        corrected = det.correct(X_adv)
        entry["purified_accuracy"] = float((corrected.defense == y_test).mean())
        entry["corrected_accuracy"] = float((corrected.corrected == y_test).mean())
        results["attacks"][f"pgd_linf_eps{eps}"] = entry

    # Adaptive: the detector's score is an extra "rejected" logit; EOT over the latent draws.
    det.set_params(score_type="consistency", consistency="kl")
    det.infer_threshold(X_val, threshold_perc=95)
    t0 = time.perf_counter()
    adaptive = PGD(det, norm=np.inf, eps=0.2, step_size=0.01, max_iter=40, random_state=0, eot_samples=8)
    X_adapt = adaptive.generate(X_test, y_test)
    adaptive_s = time.perf_counter() - t0
    with torch.no_grad():
        pred = clf(torch.as_tensor(X_adapt)).argmax(1).numpy()
    entry = detection(det, X_val, X_test, y_test, X_adapt, clf)
    entry["classifier_accuracy"] = float((pred == y_test).mean())
    entry["attack_seconds"] = adaptive_s
    results["attacks"]["adaptive_pgd_linf_eps0.2_eot8"] = entry

    noise = np.random.RandomState(1).rand(300, 64).astype(np.float32)
    det.set_params(score_type="reconstruction")
    results["ood_uniform_noise_auroc"] = detection_auroc(
        det.adversarial_score(X_test), det.adversarial_score(noise)
    )
    print(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
