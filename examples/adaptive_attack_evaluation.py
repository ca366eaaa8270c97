"""Honest evaluation of a detector: a fixed threshold, adaptive attacks, and a held-out attack.

On the 8x8 digits of skadv.datasets:

1. train a CNN (skorch) and fit ModelDistillationDetector candidates on clean rows. Each
   threshold is fixed with ``infer_threshold`` on held-out clean validation rows (5 % false
   positives there) before any attack. ``contamination`` would set it in-sample, on the
   training rows, and flag more held-out clean rows than it says: the script shows both;
2. select a setting with adaptive PGD on the validation rows (the tuning attack);
3. evaluate the selected detector on the test rows with an attack it was NOT tuned on, the
   AutoAttack ensemble (adaptive), and run the indicators of attack failure on it. Tuning
   with one attack rewards that attack's blind spots: evaluate with another, stronger one;
4. report, at the fixed threshold: the evasion rate (misclassified and not flagged, the
   headline) next to the clean cost (held-out clean FPR and clean accuracy with rejection),
   the TPR over the successful adversarial examples and their AUROC;
5. plot security curves (non-adaptive vs adaptive PGD), score histograms with ROC, and the
   trace of PGD with line search on one digit.

    python examples/adaptive_attack_evaluation.py [--quick] [--out DIR]
"""

import argparse
import os
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

from skadv import ModelDistillationDetector
from skadv.attacks import (
    PGD,
    AttackFailureWarning,
    AutoAttack,
    PGDLineSearch,
    check_attack_failure,
)
from skadv.datasets import load_digits8, make_digits_classifier
from skadv.metrics import accuracy_with_rejection, detection_auroc, security_evaluation
from skadv.plotting import (
    AttackTraceDisplay,
    ScoreHistogramDisplay,
    SecurityEvaluationDisplay,
    plot_detection_roc,
)


def at_threshold(det, net, X_clean, y_clean, X_adv, y_adv):
    """Metrics at the detector's fixed threshold; positives: attacked rows the classifier gets wrong."""
    flagged_clean = det.predict(X_clean) == -1
    wrong, flagged = net.predict(X_adv) != y_adv, det.predict(X_adv) == -1
    return {
        "fpr": flagged_clean.mean(),
        "clean_acc": accuracy_with_rejection(y_clean, net.predict(X_clean), rejected=flagged_clean),
        "evasion": np.mean(wrong & ~flagged),
        "tpr": flagged[wrong].mean() if wrong.any() else np.nan,
        "auroc": detection_auroc(det.adversarial_score(X_clean), det.adversarial_score(X_adv)[wrong])
        if wrong.any() else np.nan,
    }


def main(quick=False, out="examples_out"):
    os.makedirs(out, exist_ok=True)
    X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=0)
    X_fit, X_val, y_fit, y_val = train_test_split(X_train, y_train, test_size=0.2, stratify=y_train,
                                                  random_state=0)
    if quick:
        X_test, y_test = X_test[:100], y_test[:100]
    net = make_digits_classifier(X_fit, y_fit, epochs=4 if quick else 20, random_state=0)
    cnn = net.module_
    pgd = {"step_size": 0.05 if quick else 0.01, "max_iter": 10 if quick else 40, "random_state": 0}

    # 1. Candidates, each thresholded on held-out clean rows (not in-sample with contamination).
    candidates = {}
    for loss_type in ("kld", "xent"):
        det = ModelDistillationDetector(cnn, input_shape=(1, 8, 8), loss_type=loss_type, contamination=0.05,
                                        epochs=5 if quick else 30, random_state=0).fit(X_fit)
        in_sample_fpr = np.mean(det.predict(X_test) == -1)
        det.infer_threshold(X_val, threshold_perc=95)
        print(f"loss_type={loss_type}: contamination=0.05 (in-sample) flags {in_sample_fpr:.3f} of the clean "
              f"test rows; infer_threshold on held-out rows flags {np.mean(det.predict(X_test) == -1):.3f}")
        candidates[loss_type] = det

    # 2. Selection with the tuning attack (adaptive PGD) on validation rows.
    n_tune = 60 if quick else 200
    tuning = {}
    for loss_type, det in candidates.items():
        X_adv = PGD(det, eps=0.1, **pgd).generate(X_val[:n_tune], y_val[:n_tune])
        tuning[loss_type] = at_threshold(det, net, X_val, y_val, X_adv, y_val[:n_tune])["evasion"]
        print(f"loss_type={loss_type}: adaptive PGD eps=0.1 evasion on validation rows {tuning[loss_type]:.3f}")
    chosen = min(tuning, key=tuning.get)
    det = candidates[chosen]
    print(f"selected loss_type={chosen!r} (lowest evasion under the tuning attack)")

    # 3. Test rows: the tuning attack and a held-out one (the ensemble), at the fixed threshold.
    n_auto = 40 if quick else 200
    X_eval, y_eval = X_test[:n_auto], y_test[:n_auto]
    auto = AutoAttack(det, eps=0.1, max_iter=10 if quick else 50, square_max_iter=50 if quick else 300,
                      random_state=0)
    attacks = {
        "non-adaptive PGD": PGD(det, eps=0.1, adaptive=False, **pgd),
        "adaptive PGD (tuning attack)": PGD(det, eps=0.1, **pgd),
        "AutoAttack (held-out attack)": auto,
    }
    print(f"\ntest rows, eps=0.1, threshold fixed on held-out clean rows ({n_auto} attacked rows)")
    print(f"{'attack':30s} {'evasion':>7s} {'TPR':>6s} {'AUROC':>6s} | {'clean FPR':>9s} {'clean acc':>9s}")
    attacked = {name: attack.generate(X_eval, y_eval) for name, attack in attacks.items()}
    for name, X_adv in attacked.items():
        r = at_threshold(det, net, X_test, y_test, X_adv, y_eval)
        print(f"{name:30s} {r['evasion']:7.3f} {r['tpr']:6.3f} {r['auroc']:6.3f} | {r['fpr']:9.3f} "
              f"{r['clean_acc']:9.3f}")
    print("evasion: misclassified and not flagged; TPR/AUROC over the successful adversarial examples;\n"
          "clean FPR / clean acc: clean test rows flagged / clean accuracy with rejection (the clean cost)")

    # The indicators of attack failure on the held-out attack: a weak attack is not a robust detector.
    n_check = 15 if quick else 40
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AttackFailureWarning)  # printed below instead
        report = check_attack_failure(auto, X_eval[:n_check], y_eval[:n_check], black_box=None,
                                      max_samples=n_check)
    for check_name, check in report.checks.items():
        print(f"failure check {check_name:13s} {'FIRED' if check.fired else 'ok':5s} value {check.value:.3f}")
        if check.fired:
            print(f"    {check.message}")

    # 5. Figures. Security curves of the selected detector, non-adaptive and adaptive PGD.
    eps_values = [0.0, 0.1, 0.2] if quick else [0.0, 0.05, 0.1, 0.15, 0.2, 0.3]
    n_sec = 40 if quick else 200
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, adaptive in zip(axes, (False, True)):
        result = security_evaluation(det, PGD, X_test[:n_sec], y_test[:n_sec], eps_values, adaptive=adaptive,
                                     **pgd)
        SecurityEvaluationDisplay.from_evaluation(result, ax=ax, legend=False)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(os.path.join(out, "security_evaluation.png"), dpi=100)
    plt.close(fig)

    # Clean vs attacked scores at eps=0.1, with the fixed threshold, and the ROC of the same scores.
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    for row, (name, X_adv) in enumerate(list(attacked.items())[1:]):
        ScoreHistogramDisplay.from_estimator(det, X_test, X_adv, name=name, log_scale="auto", ax=axes[row, 0])
        plot_detection_roc(scores_clean=det.adversarial_score(X_test), scores_attacked=det.adversarial_score(X_adv),
                           name=name, ax=axes[row, 1])
    fig.tight_layout()
    fig.savefig(os.path.join(out, "score_histograms_roc.png"), dpi=100)
    plt.close(fig)

    # secml's PGD with line search, adaptive, on one digit: loss, confidences, labelled images.
    attack = PGDLineSearch(det, eps=1.5, max_iter=20 if quick else 50)
    disp = AttackTraceDisplay.from_attack(attack, X_test, y_test, sample_index=0, image_shape=(8, 8),
                                          predict=net.predict)
    disp.figure_.tight_layout()
    disp.figure_.savefig(os.path.join(out, "attack_trace.png"), dpi=100)
    plt.close(disp.figure_)
    print(f"figures: {os.path.abspath(out)}/security_evaluation.png, score_histograms_roc.png, attack_trace.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="examples_out")
    main(**vars(parser.parse_args()))
