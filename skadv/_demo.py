"""The end-to-end demo on the 8x8 digits behind ``python -m skadv demo``.

The MSP baseline and the four detectors, evaluated at fixed thresholds as
:mod:`skadv._evaluation` describes, against FGSM, PGD and AutoAttack (the baseline
included: it is attackable like the detectors), plus figures.
"""

import os
import time

import numpy as np
from sklearn.model_selection import train_test_split

from ._evaluation import (
    adaptive_attack,
    attack_row,
    clean_row,
    detector_defense,
    fit_at_fixed_threshold,
    print_checks,
    section,
    verdict,
)

# Settings of the full run and of --quick. The adaptive rows dominate the run time:
# AutoAttack and the failure checks run on the first n_adaptive / n_check test rows.
_SETTINGS = {
    False: {
        "classifier_epochs": 25, "ae_epochs": 30, "distillation_epochs": 30, "vae_epochs": 60, "dnr_cv": 5,
        "n_eval": None, "pgd_steps": 40, "pgd_step": 0.01,
        "n_adaptive": 200, "auto_iter": 50, "auto_square": 300, "eot": 4, "n_check": 40,
        "sec_eps": [0.0, 0.05, 0.1, 0.2, 0.3], "n_sec": 100, "sec_steps": 20, "sec_step": 0.025,
        "trace_iter": 60,
    },
    True: {
        "classifier_epochs": 8, "ae_epochs": 5, "distillation_epochs": 8, "vae_epochs": 15, "dnr_cv": 3,
        "n_eval": 100, "pgd_steps": 10, "pgd_step": 0.05,
        "n_adaptive": 40, "auto_iter": 10, "auto_square": 50, "eot": 2, "n_check": 15,
        "sec_eps": [0.0, 0.1, 0.2], "n_sec": 30, "sec_steps": 10, "sec_step": 0.05,
        "trace_iter": 30,
    },
}
_DNR_LAYERS = ["features.1", "features.4", "classifier.2"]
# The baseline: scored, thresholded and attacked like the detectors; the figures show the detectors only.
_BASELINE = "MSP (baseline)"


def _fit_detectors(cnn, X_fit, y_fit, X_val, settings, random_state):
    """The MSP baseline and the four detectors, fitted on clean data; thresholds at 5 % FPR on ``X_val``."""
    from . import (
        AdversarialAEDetector,
        ConfidenceDetector,
        DeepNeuralRejection,
        ModelDistillationDetector,
        VAEDetector,
    )

    common = {"input_shape": (1, 8, 8), "random_state": random_state}
    detectors = {
        # 1 - the classifier's max-softmax probability (Hendrycks & Gimpel 2017): what every detector must beat.
        _BASELINE: ConfidenceDetector(cnn, **common),
        "AdversarialAE": AdversarialAEDetector(cnn, epochs=settings["ae_epochs"], temperature=0.5, **common),
        "ModelDistillation": ModelDistillationDetector(cnn, epochs=settings["distillation_epochs"], **common),
        "VAE": VAEDetector(cnn, epochs=settings["vae_epochs"], **common),
        "DNR": DeepNeuralRejection(cnn, layers=_DNR_LAYERS, cv=settings["dnr_cv"], n_jobs=1, **common),
    }
    fit_at_fixed_threshold(detectors, X_fit, y_fit, X_val)
    return detectors


def _print_table(clean, rows):
    section("results at the fixed thresholds (5 % FPR on held-out clean validation rows)")
    header = (f"{'detector':18s} {'clean FPR':>9s} {'clean acc':>9s} | {'attack':24s} {'evasion':>7s} "
              f"{'TPR':>6s} {'AUROC':>6s}  failure checks")
    print(header)
    print("-" * len(header))
    last = None
    for name, attack_name, r, checks in rows:
        c = clean[name]
        lead = f"{name:18s} {c['fpr']:9.3f} {c['clean_acc_rej']:9.3f}" if name != last else " " * 38
        last = name
        phrase = "" if checks is None else verdict(checks)
        print(f"{lead} | {attack_name:24s} {r['evasion']:7.3f} {r['tpr']:6.3f} {r['auroc']:6.3f}  {phrase}")
    print(
        "clean FPR: share of clean test rows flagged; clean acc: clean accuracy with rejection (a flagged clean\n"
        "row is an error): the cost of deploying the detector. evasion: share of attacked rows misclassified and\n"
        "not flagged (the attacker's success; lower is better). TPR: share of the successful adversarial examples\n"
        "(attacked rows misclassified) that are flagged; AUROC: those against the clean rows. Non-adaptive\n"
        "attacks target the classifier alone; adaptive ones classifier and detector together (AutoAttack:\n"
        "APGD-CE, APGD-margin on the K+1 scores, two-phase, orthogonal PGD, Square). MSP (the classifier's\n"
        "max-softmax probability) is the baseline every detector must beat, attacked the same way."
    )


def _figures(out_dir, defenses, detectors, X_eval, y_eval, X_pgd, settings, random_state):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .attacks import PGD, PGDLineSearch
    from .metrics import security_evaluation
    from .plotting import (
        AttackTraceDisplay,
        DistinctLabelsDisplay,
        ScoreHistogramDisplay,
        SecurityEvaluationDisplay,
    )

    written = []

    def save(fig, filename, **layout):
        path = os.path.join(out_dir, filename)
        fig.tight_layout(**layout)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    fig, axes = plt.subplots(1, len(defenses), figsize=(4.0 * len(defenses), 3.6))
    for ax, (name, defense) in zip(axes, defenses.items()):
        # Each detector's own threshold on its own scale; log axes for scores piled up near 0.
        ScoreHistogramDisplay.from_estimator(defense.estimator, X_eval, X_pgd, name=name, log_scale="auto", ax=ax)
    fig.suptitle("Scores of clean test digits vs PGD eps=0.2 (non-adaptive); dashed: the fixed threshold")
    save(fig, "score_histograms.png")

    n_sec = settings["n_sec"]
    fig, axes = plt.subplots(1, len(detectors), figsize=(3.6 * len(detectors), 3.6), sharey=True)
    for ax, (name, det) in zip(axes, detectors.items()):
        result = security_evaluation(
            det, PGD, X_eval[:n_sec], y_eval[:n_sec], settings["sec_eps"], step_size=settings["sec_step"],
            max_iter=settings["sec_steps"], eot_samples=settings["eot"], random_state=random_state,
        )
        SecurityEvaluationDisplay.from_evaluation(result, ax=ax, legend=False)
        ax.set_title(name)
    # One legend for all panels, in its own band below them: it covers no curve.
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, frameon=False)
    fig.suptitle(f"Security evaluation: adaptive PGD ({settings['sec_steps']} steps), {n_sec} test digits")
    save(fig, "security_evaluation.png", rect=(0, 0.08, 1, 1))

    trace = AttackTraceDisplay.from_attack(
        PGDLineSearch(detectors["DNR"], eps=2.0, max_iter=settings["trace_iter"]), X_eval, y_eval,
        sample_index=0, image_shape=(8, 8), predict=detectors["DNR"].predict,
    )
    trace.figure_.suptitle("Adaptive PGD with line search against DNR (one digit)")
    save(trace.figure_, "attack_trace_dnr.png")

    vae_display = DistinctLabelsDisplay.from_estimator(
        detectors["VAE"], X_eval, X_pgd, names=("clean", "PGD eps=0.2")
    )
    vae_display.ax_.set_title("VAE: distinct labels over sampled reconstructions")
    save(vae_display.figure_, "vae_distinct_labels.png")
    return written


def run_demo(out_dir="skadv_demo", quick=False, random_state=0):
    """Train a classifier on digits, fit skadv's four detectors and a baseline, attack, and evaluate.

    Prints one table (held-out clean FPR and clean accuracy with rejection; per
    attack the evasion rate, TPR and AUROC at the fixed threshold, and the
    attack-failure checks of the adaptive attack) and writes PNG figures into
    ``out_dir``. Returns the table's rows ``(detector, attack, metrics, checks)``.
    """
    from .attacks import FGSM, PGD
    from .datasets import load_digits8, make_digits_classifier

    settings = _SETTINGS[bool(quick)]
    start = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=random_state)
    # X_val: held-out clean rows that fix every threshold; X_test: clean rows of the evaluation.
    X_fit, X_val, y_fit, _ = train_test_split(X_train, y_train, test_size=0.2, stratify=y_train,
                                              random_state=random_state)
    X_eval, y_eval = X_test[: settings["n_eval"]], y_test[: settings["n_eval"]]

    section(f"classifier: small CNN on the 8x8 digits, trained through skorch ({len(X_fit)} rows)")
    net = make_digits_classifier(X_fit, y_fit, epochs=settings["classifier_epochs"], random_state=random_state,
                                 verbose=True)
    cnn = net.module_
    print(f"clean test accuracy: {np.mean(net.predict(X_test) == y_test):.3f}")

    section(f"detectors: fit on {len(X_fit)} clean rows, thresholds on {len(X_val)} held-out clean rows")
    detectors = _fit_detectors(cnn, X_fit, y_fit, X_val, settings, random_state)
    defenses = {name: detector_defense(det) for name, det in detectors.items()}

    section(f"non-adaptive attacks on {len(X_eval)} test digits (the classifier alone)")
    shape = {"input_shape": (1, 8, 8)}
    attacks = {
        "FGSM eps=0.1": FGSM(cnn, eps=0.1, **shape).generate(X_eval, y_eval),
        "PGD eps=0.2": PGD(cnn, eps=0.2, step_size=settings["pgd_step"], max_iter=settings["pgd_steps"],
                           random_state=random_state, **shape).generate(X_eval, y_eval),
    }
    for name, X_adv in attacks.items():
        print(f"{name:14s} classifier accuracy {np.mean(net.predict(X_adv) == y_eval):.3f}")

    clean, rows, checks_by_detector = {}, [], {}
    n_adaptive = min(settings["n_adaptive"], len(X_eval))
    for name, defense in defenses.items():
        clean_scores = defense.scores(X_eval)
        clean[name] = clean_row(defense, X_eval, y_eval)
        for attack_name, X_adv in attacks.items():
            rows.append((name, attack_name, attack_row(defense, clean_scores, X_adv, y_eval), None))
        X_adv, checks = adaptive_attack(
            defense.estimator, X_eval[:n_adaptive], y_eval[:n_adaptive], eps=0.2, max_iter=settings["auto_iter"],
            square_max_iter=settings["auto_square"], eot_samples=settings["eot"], n_check=settings["n_check"],
            random_state=random_state,
        )
        checks_by_detector[name] = checks
        row = attack_row(defense, clean_scores, X_adv, y_eval[:n_adaptive])
        rows.append((name, f"AutoAttack eps=0.2 ({n_adaptive})", row, checks))
        print(f"{name:18s} attacked adaptively ({time.perf_counter() - start:5.0f} s so far)", flush=True)

    _print_table(clean, rows)
    section("attack-failure checks of the adaptive attack (Pintor et al. 2022)")
    print_checks(checks_by_detector)

    section("figures")
    seeds = {name: det for name, det in detectors.items() if name != _BASELINE}
    for path in _figures(out_dir, defenses, seeds, X_eval, y_eval, attacks["PGD eps=0.2"], settings,
                         random_state):
        print(path)
    print(f"\nfinished in {time.perf_counter() - start:.0f} s")
    return rows
