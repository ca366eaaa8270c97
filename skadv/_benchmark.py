"""The detection benchmark behind ``python -m skadv benchmark``.

Rows: the four seed detectors and the three baselines, with default settings
(the demo's training lengths). Every threshold is fixed on held-out clean rows
(``infer_threshold(X_val, 95)``) before any attack. Columns: the false-positive
rate on other clean rows at that threshold; for non-adaptive FGSM, PGD and
C&W-L2 (against the classifier alone) the AUROC of the successful adversarial
rows against the clean rows and the share of them flagged (TPR); the AUROC of
harmful against harmless corruptions; the evasion rate under the adaptive
AutoAttack ensemble and the verdict of the attack-failure checks; fit and score
times. The evaluation is the demo's (:mod:`skadv._evaluation`). The full
digits28-cnn run uses fewer rows, epochs and attacked rows than the 8x8
workloads (``_DIGITS28_FULL``), so that it stays practical on two cores.
"""

import csv
import os
import time

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch
from torch import nn

from ._evaluation import (
    adaptive_attack,
    attack_row,
    clean_row,
    corruption_auroc,
    detector_defense,
    fit_at_fixed_threshold,
    section,
    verdict,
)

WORKLOADS = ("digits-mlp", "digits-cnn", "digits28-cnn")
SEED_DETECTORS = ("AdversarialAE", "ModelDistillation", "VAE", "DNR")
BASELINES = ("MSP", "Mahalanobis", "FeatureSqueezing")
COLUMNS = (
    "detector", "kind", "clean_fpr", "clean_acc_rej",
    "fgsm_auroc", "fgsm_tpr", "pgd_auroc", "pgd_tpr", "cw_auroc", "cw_tpr",
    "harmful_auroc", "adaptive_evasion", "adaptive_tpr", "failure_checks",
    "fit_s", "score_ms_per_1k", "workload", "settings",
)
SMOKE_TEST = "--quick: SMOKE TEST ONLY (few epochs, few rows, weak attacks); not benchmark numbers"

# The full run and --quick. The adaptive rows dominate the run time: AutoAttack runs on
# the first n_adaptive evaluation rows, the failure checks on the first n_check.
SETTINGS = {
    False: {
        "classifier_epochs": 25, "ae_epochs": 30, "distillation_epochs": 30, "vae_epochs": 60, "dnr_cv": 5,
        "n_digits28": 6000, "n_eval": 300, "pgd_steps": 40, "pgd_step": 0.01,
        "cw_iter": 100, "cw_search": 5, "cw_const": 1e-2,
        "severities": (1, 2, 3, 4, 5),
        "n_adaptive": 200, "auto_iter": 50, "auto_square": 300, "eot": 4, "n_check": 40,
    },
    True: {
        "classifier_epochs": 8, "ae_epochs": 5, "distillation_epochs": 8, "vae_epochs": 15, "dnr_cv": 3,
        "n_digits28": 1500, "n_eval": 80, "pgd_steps": 10, "pgd_step": 0.05,
        "cw_iter": 20, "cw_search": 2, "cw_const": 1.0,
        "severities": (2, 4),
        "n_adaptive": 15, "auto_iter": 5, "auto_square": 20, "eot": 1, "n_check": 8,
    },
}
# A 28x28 row costs about 12 times an 8x8 one in every convolution (training, scoring, each
# attack step): the full digits28-cnn run uses fewer rows, epochs and attacked rows.
_DIGITS28_FULL = {
    "n_digits28": 3000, "classifier_epochs": 15, "ae_epochs": 15, "distillation_epochs": 20, "vae_epochs": 30,
    "dnr_cv": 3, "n_eval": 200, "n_adaptive": 100,
}
_FGSM_EPS, _PGD_EPS = 0.1, 0.2


def _settings(workload, quick):
    settings = dict(SETTINGS[bool(quick)])
    if workload == "digits28-cnn" and not quick:
        settings.update(_DIGITS28_FULL)
    return settings


def _log(verbose, message):
    if verbose:
        print(message, flush=True)


def load_workload(workload, settings, random_state, verbose):
    """Data split into fit / held-out validation / test rows, and the trained classifier to protect."""
    from .datasets import load_digits8, load_digits28, make_digits_classifier

    if workload == "digits28-cnn":
        X, y = load_digits28(settings["n_digits28"], random_state=random_state)
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y,
                                                            random_state=random_state)
        side = 28
    else:
        X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=random_state)
        side = 8
    # X_val: held-out clean rows that fix every threshold; X_test: clean rows of the evaluation.
    X_fit, X_val, y_fit, _ = train_test_split(X_train, y_train, test_size=0.2, stratify=y_train,
                                              random_state=random_state)
    if workload == "digits-mlp":
        with torch.random.fork_rng():
            torch.manual_seed(random_state)
            # 64-128-10 behind a Flatten, so that it takes images (the image squeezers, the AE) too.
            module = nn.Sequential(nn.Flatten(), nn.Linear(side * side, 128), nn.ReLU(), nn.Linear(128, 10))
        dnr_layers = ["2", "3"]
    else:
        module = None
        dnr_layers = ["features.1", "features.4", "classifier.2"]
    net = make_digits_classifier(X_fit, y_fit, epochs=settings["classifier_epochs"], random_state=random_state,
                                 module=module, verbose=verbose >= 2)
    return Bunch(X_fit=X_fit, y_fit=y_fit, X_val=X_val, X_test=X_test, y_test=y_test, net=net,
                 model=net.module_, input_shape=(1, side, side), dnr_layers=dnr_layers)


def _make_detectors(data, settings, random_state):
    from . import (
        AdversarialAEDetector,
        ConfidenceDetector,
        DeepNeuralRejection,
        FeatureSqueezingDetector,
        MahalanobisDetector,
        ModelDistillationDetector,
        VAEDetector,
    )

    model = data.model
    common = {"input_shape": data.input_shape, "random_state": random_state}
    return {
        "AdversarialAE": AdversarialAEDetector(model, epochs=settings["ae_epochs"], temperature=0.5, **common),
        "ModelDistillation": ModelDistillationDetector(model, epochs=settings["distillation_epochs"], **common),
        "VAE": VAEDetector(model, epochs=settings["vae_epochs"], **common),
        "DNR": DeepNeuralRejection(model, layers=data.dnr_layers, cv=settings["dnr_cv"], n_jobs=1, **common),
        "MSP": ConfidenceDetector(model, **common),
        "Mahalanobis": MahalanobisDetector(model, **common),
        "FeatureSqueezing": FeatureSqueezingDetector(model, **common),
    }


def non_adaptive_attacks(data, X, y, settings, random_state, kinds=("fgsm", "pgd", "cw")):
    """FGSM, PGD (L-inf) and C&W-L2 rows (those named in ``kinds``) against the classifier alone."""
    from .attacks import FGSM, PGD, CarliniWagnerL2

    shape = {"input_shape": data.input_shape}
    attacks = {
        "fgsm": lambda: FGSM(data.model, eps=_FGSM_EPS, **shape),
        "pgd": lambda: PGD(data.model, eps=_PGD_EPS, step_size=settings["pgd_step"], max_iter=settings["pgd_steps"],
                           random_state=random_state, **shape),
        "cw": lambda: CarliniWagnerL2(data.model, max_iter=settings["cw_iter"],
                                      binary_search_steps=settings["cw_search"],
                                      initial_const=settings["cw_const"], learning_rate=0.05, **shape),
    }
    return {kind: attacks[kind]().generate(X, y) for kind in kinds}


def corrupted_rows(data, X, y, settings, random_state):
    """Corrupted copies of ``X`` (every kind and severity, stacked) and which are harmful or harmless.

    Harmful: the protected classifier is right on the clean row and wrong on the
    corrupted one; harmless: right on both (rows it gets wrong clean are neither).
    """
    from .corruptions import CORRUPTIONS, corrupt
    from .metrics import harmfulness

    pred_clean = data.net.predict(X)
    corrupted, harmful, harmless = [], [], []
    for kind in CORRUPTIONS:
        for severity in settings["severities"]:
            X_bad = corrupt(X, kind, severity, input_shape=data.input_shape,
                            random_state=random_state).astype(np.float32)
            harm = harmfulness(y, pred_clean, data.net.predict(X_bad))
            corrupted.append(X_bad)
            harmful.append(harm.harmful)
            harmless.append(harm.harmless)
    return np.concatenate(corrupted), np.concatenate(harmful), np.concatenate(harmless)


def run_benchmark(workload="digits-cnn", *, quick=False, out_dir="skadv_benchmark", random_state=0, verbose=1):
    """Fit the seven detectors on one workload, attack, and write the table and a figure.

    Parameters
    ----------
    workload : {"digits-mlp", "digits-cnn", "digits28-cnn"}
        The classifier and data (:data:`WORKLOADS`).
    quick : bool
        Small settings for a smoke test; every output says its numbers are not a benchmark.
    out_dir : str
        Folder for ``benchmark_<workload>.csv``, ``.md`` and ``.png``.
    random_state : int
        Seeds the split, the training and the attacks.
    verbose : int
        0: stage headers and the table; 1: a line per detector and attack; 2: also the
        classifier's epochs.

    Returns
    -------
    rows : list of dict
        The table: one dict per detector with the keys :data:`COLUMNS`.
    """
    if workload not in WORKLOADS:
        raise ValueError(f"Unknown workload {workload!r}; choose one of {', '.join(WORKLOADS)}.")
    settings = _settings(workload, quick)
    start = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    if quick:
        print(f"NOTE {SMOKE_TEST}.", flush=True)

    section(f"workload {workload}: training the classifier")
    data = load_workload(workload, settings, random_state, verbose)
    print(f"clean test accuracy: {np.mean(data.net.predict(data.X_test) == data.y_test):.3f} "
          f"({len(data.X_fit)} fit, {len(data.X_val)} held-out threshold, {len(data.X_test)} test rows)")

    section("detectors: fit on clean rows, thresholds at 5 % FPR on held-out clean rows")
    detectors = _make_detectors(data, settings, random_state)
    fit_seconds = fit_at_fixed_threshold(detectors, data.X_fit, data.y_fit, data.X_val, verbose=verbose)

    n_eval = min(settings["n_eval"], len(data.X_test))
    X_eval, y_eval = data.X_test[:n_eval], data.y_test[:n_eval]
    section(f"non-adaptive attacks and corruptions on {n_eval} test rows")
    attacks = non_adaptive_attacks(data, X_eval, y_eval, settings, random_state)
    for name, X_adv in attacks.items():
        _log(verbose, f"{name:5s} classifier accuracy {np.mean(data.net.predict(X_adv) == y_eval):.3f}")
    X_corrupted, harmful, harmless = corrupted_rows(data, X_eval, y_eval, settings, random_state)
    _log(verbose, f"corruptions: {harmful.sum()} harmful, {harmless.sum()} harmless rows")

    section(f"evaluation; adaptive AutoAttack eps={_PGD_EPS} on {min(settings['n_adaptive'], n_eval)} rows")
    settings_label = "quick (smoke test only)" if quick else "full"
    rows = []
    for name, det in detectors.items():
        defense = detector_defense(det)
        scoring = time.perf_counter()
        # Clean scores and FPR on every test row: thresholds are checked on as many rows as there are.
        clean_scores = defense.scores(data.X_test)
        score_ms = 1e6 * (time.perf_counter() - scoring) / len(data.X_test)
        row = {"detector": name, "kind": "baseline" if name in BASELINES else "seed"}
        clean = clean_row(defense, data.X_test, data.y_test)
        row.update(clean_fpr=clean["fpr"], clean_acc_rej=clean["clean_acc_rej"])
        for attack_name, X_adv in attacks.items():
            result = attack_row(defense, clean_scores, X_adv, y_eval)
            row[f"{attack_name}_auroc"], row[f"{attack_name}_tpr"] = result["auroc"], result["tpr"]
        row["harmful_auroc"] = corruption_auroc(defense, X_corrupted, harmful, harmless)
        n_adaptive = min(settings["n_adaptive"], n_eval)
        X_adv, checks = adaptive_attack(
            det, X_eval[:n_adaptive], y_eval[:n_adaptive], eps=_PGD_EPS, max_iter=settings["auto_iter"],
            square_max_iter=settings["auto_square"], eot_samples=settings["eot"], n_check=settings["n_check"],
            random_state=random_state,
        )
        adaptive = attack_row(defense, clean_scores, X_adv, y_eval[:n_adaptive])
        row.update(adaptive_evasion=adaptive["evasion"], adaptive_tpr=adaptive["tpr"], failure_checks=verdict(checks),
                   fit_s=fit_seconds[name], score_ms_per_1k=score_ms, workload=workload, settings=settings_label)
        rows.append(row)
        _log(verbose, f"{name:18s} evaluated ({time.perf_counter() - start:5.0f} s so far)")

    section(f"benchmark on {workload}" + (" -- SMOKE TEST ONLY (--quick)" if quick else ""))
    table = _markdown_table(rows)
    print(table)
    print(_LEGEND)
    paths = _write_outputs(rows, table, out_dir, workload, quick)
    section("files")
    for path in paths:
        print(path)
    print(f"\nfinished in {time.perf_counter() - start:.0f} s")
    return rows


_LEGEND = (
    "clean_fpr: share of clean test rows flagged at the threshold fixed on held-out clean rows (target 0.05).\n"
    "<attack>_auroc / _tpr: successful adversarial rows (misclassified) vs clean rows; TPR at the fixed threshold.\n"
    f"fgsm: FGSM eps={_FGSM_EPS}; pgd: PGD L-inf eps={_PGD_EPS}; cw: Carlini-Wagner L2; all against the classifier\n"
    "alone (non-adaptive). harmful_auroc: harmful vs harmless corrupted rows (noise, blur, brightness, pixelate).\n"
    f"adaptive_evasion: share of rows misclassified and not flagged under AutoAttack eps={_PGD_EPS} against\n"
    "classifier + detector (lower is better); failure_checks: the attack-failure indicators that fired (a FIRED\n"
    "check means the attack may be too weak: the evasion is then a lower bound). fit_s: fit + threshold seconds;\n"
    "score_ms_per_1k: milliseconds to score 1000 clean rows."
)


def _format(column, value):
    if not isinstance(value, float):
        return str(value)
    return "nan" if np.isnan(value) else f"{value:.1f}" if column in ("fit_s", "score_ms_per_1k") else f"{value:.3f}"


def _markdown_table(rows):
    shown = [c for c in COLUMNS if c not in ("workload", "settings")]
    lines = ["| " + " | ".join(shown) + " |", "|" + "|".join("---" for _ in shown) + "|"]
    lines += ["| " + " | ".join(_format(c, row[c]) for c in shown) + " |" for row in rows]
    return "\n".join(lines)


def _write_outputs(rows, table, out_dir, workload, quick):
    stem = os.path.join(out_dir, f"benchmark_{workload}")
    with open(stem + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    command = f"python -m skadv benchmark --workload {workload}" + (" --quick" if quick else "")
    with open(stem + ".md", "w") as f:
        f.write(f"# skadv detection benchmark: {workload}\n\n")
        if quick:
            f.write(f"**{SMOKE_TEST}.**\n\n")
        f.write(f"Made by `{command}`.\n\n{table}\n\n```\n{_LEGEND}\n```\n")
    _figure(rows, stem + ".png", workload, quick)
    return [stem + ".csv", stem + ".md", stem + ".png"]


def _figure(rows, path, workload, quick):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["detector"] for row in rows]
    y = np.arange(len(rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.55 * len(rows) + 2.2), sharey=True,
                                      gridspec_kw={"width_ratios": [3, 2]})
    series = [("fgsm_auroc", "FGSM", "tab:blue"), ("pgd_auroc", "PGD", "tab:orange"), ("cw_auroc", "C&W", "tab:green"),
              ("harmful_auroc", "harmful vs harmless corruptions", "tab:purple")]
    height = 0.8 / len(series)
    for i, (column, label, color) in enumerate(series):
        left.barh(y - 0.4 + (i + 0.5) * height, [row[column] for row in rows], height, label=label, color=color)
    left.axvline(0.5, color="grey", ls="--", lw=0.8)
    left.set(xlim=(0, 1), xlabel="AUROC (non-adaptive; 0.5 = chance)", yticks=y, yticklabels=names)
    left.invert_yaxis()
    # Legends in a band below the panels: they cover no bar.
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)

    evasion = [row["adaptive_evasion"] for row in rows]
    fpr = [row["clean_fpr"] for row in rows]
    right.barh(y - 0.2, evasion, 0.4, color="tab:red", label="adaptive evasion (AutoAttack)")
    right.barh(y + 0.2, fpr, 0.4, color="tab:grey", label="clean FPR (dotted: the 0.05 target)")
    right.axvline(0.05, color="black", ls=":", lw=0.8)
    for yi, row in zip(y, rows):
        if row["failure_checks"] != "none fired":
            # Inside a long bar (white on red), after a short one (black on white): always legible.
            inside = row["adaptive_evasion"] >= 0.5
            x = 0.02 if inside else np.nan_to_num(row["adaptive_evasion"]) + 0.02
            right.text(x, yi - 0.2, row["failure_checks"], va="center", fontsize=7,
                       color="white" if inside else "black")
    right.set(xlim=(0, 1), xlabel="share of rows (lower is better)")
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, fontsize=8, frameon=False)
    title = f"skadv detection benchmark: {workload} (thresholds at 5 % FPR on held-out clean rows)"
    if quick:
        title += "\nSMOKE TEST ONLY (--quick): not benchmark numbers"
    fig.suptitle(title, fontsize=10, color="tab:red" if quick else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
