"""Honest evaluation of a detector: non-adaptive versus adaptive attacks.

On load_digits, following DESIGN §5:

1. train a CNN (skorch) and fit a ModelDistillationDetector on clean data (its threshold
   flags 5 % of clean training digits);
2. attack the test digits with PGD (L-inf) at increasing eps, once against the classifier
   alone (non-adaptive) and once against classifier + detector (adaptive: the detector's
   score is an extra "rejected" logit, Carlini & Wagner 2017);
3. report accuracy, detection rate, accuracy with rejection and the attacker's success
   (misclassified and unflagged) for both, with detection AUROC / TPR at 5 % FPR on all
   attacked inputs;
4. plot the security-evaluation curves, clean-vs-attacked score histograms and ROC, and the
   trace of secml's PGD with line search on one digit.

    python examples/adaptive_attack_evaluation.py [--quick] [--out DIR]
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from skadv import ModelDistillationDetector  # noqa: E402
from skadv.attacks import PGD, PGDLineSearch  # noqa: E402
from skadv.datasets import load_digits8, make_digits_classifier  # noqa: E402
from skadv.metrics import detection_auroc, security_evaluation, tpr_at_fpr  # noqa: E402
from skadv.plotting import (  # noqa: E402
    AttackTraceDisplay,
    ScoreHistogramDisplay,
    SecurityEvaluationDisplay,
    plot_detection_roc,
)


def main(quick=False, out="examples_out"):
    os.makedirs(out, exist_ok=True)
    X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=0)
    if quick:
        X_test, y_test = X_test[:120], y_test[:120]
    net = make_digits_classifier(X_train, y_train, epochs=4 if quick else 20, random_state=0)
    det = ModelDistillationDetector(net.module_, input_shape=(1, 8, 8), epochs=5 if quick else 30,
                                    random_state=0).fit(X_train)

    eps_values = [0.0, 0.1, 0.2] if quick else [0.0, 0.05, 0.1, 0.15, 0.2, 0.3]
    pgd = dict(step_size=0.02 if quick else 0.01, max_iter=15 if quick else 40, random_state=0)
    results = {
        adaptive: security_evaluation(det, PGD, X_test, y_test, eps_values, adaptive=adaptive, **pgd)
        for adaptive in (False, True)
    }
    print(f"{'attack':13s} {'eps':>5s} {'acc':>5s} {'detected':>8s} {'acc+rej':>7s} {'evaded':>6s}")
    for adaptive, res in results.items():
        name = "adaptive" if adaptive else "non-adaptive"
        for i, eps in enumerate(res.eps_values):
            print(f"{name:13s} {eps:5.2f} {res.accuracy[i]:5.2f} {res.detection_rate[i]:8.2f} "
                  f"{res.accuracy_with_rejection[i]:7.2f} {res.evasion_rate[i]:6.2f}")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (adaptive, res) in zip(axes, results.items()):
        SecurityEvaluationDisplay.from_evaluation(res, name="MDD", ax=ax)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "security_evaluation.png"), dpi=100)
    plt.close(fig)

    # Detection of all attacked inputs (not only successful ones) at one budget.
    eps = 0.1
    clean_scores = det.adversarial_score(X_test)
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    for row, adaptive in enumerate((False, True)):
        X_adv = PGD(det, eps=eps, adaptive=adaptive, **pgd).generate(X_test, y_test)
        adv_scores = det.adversarial_score(X_adv)
        name = "adaptive" if adaptive else "non-adaptive"
        print(f"{name} PGD eps={eps}: detection AUROC {detection_auroc(clean_scores, adv_scores):.3f}, "
              f"TPR at 5% FPR {tpr_at_fpr(clean_scores, adv_scores, fpr=0.05):.3f} (all attacked inputs)")
        ScoreHistogramDisplay.from_predictions(clean_scores, adv_scores, threshold=det.threshold_,
                                               name=f"{name} PGD, eps={eps}", ax=axes[row, 0])
        plot_detection_roc(scores_clean=clean_scores, scores_attacked=adv_scores, name=name, ax=axes[row, 1])
    fig.tight_layout()
    fig.savefig(os.path.join(out, "score_histograms_roc.png"), dpi=100)
    plt.close(fig)

    # secml's PGD with line search, adaptive, on one digit: loss, confidences, images.
    attack = PGDLineSearch(det, eps=1.5, max_iter=20 if quick else 50)
    disp = AttackTraceDisplay.from_attack(attack, X_test, y_test, sample_index=0, image_shape=(8, 8))
    disp.figure_.tight_layout()
    disp.figure_.savefig(os.path.join(out, "attack_trace.png"), dpi=100)
    plt.close(disp.figure_)
    print(f"figures: {os.path.abspath(out)}/security_evaluation.png, score_histograms_roc.png, attack_trace.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="examples_out")
    main(**vars(parser.parse_args()))
