"""FGSM and PGD on a digits CNN: the Kolter–Madry adversarial-robustness tutorial.

Following the "Adversarial robustness: theory and practice" tutorial (Kolter & Madry,
chapter 3) on load_digits instead of MNIST:

1. train a small CNN through skorch (clean test accuracy);
2. attack the test digits with FGSM (one signed-gradient step) and PGD (projected gradient
   descent, random start) in the L-inf ball at several radii eps, then in the L2 ball (the
   "fast gradient method" and L2 PGD), and print the accuracy under attack;
3. show what random start adds (PGD started at x versus at a random point of the ball);
4. run a *targeted* PGD that drives every digit to the class ``(y + 1) mod 10`` and report
   its success rate;
5. plot accuracy-versus-eps curves with SecurityEvaluationDisplay and a grid of original
   and adversarial digits with the CNN's predictions.

No detector is involved: this is the baseline the detectors in the other examples protect.

    python examples/fgsm_pgd_tutorial.py [--quick] [--out DIR]
"""

import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from skadv.attacks import FGSM, PGD
from skadv.datasets import load_digits8, make_digits_classifier
from skadv.metrics import security_evaluation
from skadv.plotting import SecurityEvaluationDisplay


def main(quick=False, out="examples_out"):
    start = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=0)
    if quick:
        X_test, y_test = X_test[:150], y_test[:150]
    net = make_digits_classifier(X_train, y_train, epochs=5 if quick else 20, random_state=0)

    def predict(X):
        return net.predict(X.reshape(-1, 1, 8, 8))

    print(f"CNN trained on {len(X_train)} digits; clean accuracy on {len(X_test)} test digits: "
          f"{np.mean(predict(X_test) == y_test):.3f}")

    # The skorch net is attacked directly (its module returns logits; rows are reshaped to
    # (1, 8, 8) for it). Madry et al.'s L-inf setting: steps of 0.01, 40 of them; the L2
    # step follows their rule of thumb 2.5 * eps / n_steps.
    max_iter = 10 if quick else 40
    common = dict(input_shape=(1, 8, 8))
    linf_eps = [0.0, 0.05, 0.1, 0.2, 0.3]
    l2_eps = [0.0, 0.5, 1.0, 2.0, 3.0]
    linf_pgd = dict(max_iter=max_iter, step_size=0.04 if quick else 0.01, random_state=0)

    def l2_step(eps):
        return 2.5 * eps / max_iter

    runs = {
        "FGSM L-inf": (FGSM, linf_eps, {}),
        "PGD L-inf": (PGD, linf_eps, linf_pgd),
        "PGD L-inf, no random start": (PGD, linf_eps, dict(linf_pgd, random_start=False)),
        "FGM L2": (FGSM, l2_eps, dict(norm=2)),
    }
    # security_evaluation gets the digits as images (n, 1, 8, 8): for a plain model it
    # does not pass input_shape on to its clean-accuracy step (see the report).
    images = X_test.reshape(-1, 1, 8, 8)
    results = {name: security_evaluation(net, attack, images, y_test, eps, **params)
               for name, (attack, eps, params) in runs.items()}
    # L2 PGD's step size depends on eps, so each budget is its own evaluation.
    l2_pgd = [security_evaluation(net, PGD, images, y_test, [eps], norm=2, max_iter=max_iter,
                                  step_size=l2_step(eps), random_state=0) for eps in l2_eps[1:]]
    results["PGD L2"] = {
        "eps_values": np.array(l2_eps),
        "accuracy": np.r_[results["FGM L2"]["accuracy"][0], [r.accuracy[0] for r in l2_pgd]],
        "attack": "PGD",
    }

    print("\naccuracy under attack (eps = 0 is the clean accuracy)")
    for norm_name, eps_values in (("L-inf", linf_eps), ("L2", l2_eps)):
        print(f"{norm_name + ' attack':28s}" + "".join(f" {'eps=' + format(e, 'g'):>8s}" for e in eps_values))
        for name, res in results.items():
            if ("L-inf" in name) == (norm_name == "L-inf"):
                print(f"{name:28s}" + "".join(f" {a:8.3f}" for a in res["accuracy"]))

    # Targeted PGD: every digit is pushed towards the next class.
    y_target = (y_test + 1) % 10
    targeted = {}
    for eps in (0.1, 0.2, 0.3):
        targeted_pgd = PGD(net, eps=eps, targeted=True, **common, **{**linf_pgd, "max_iter": 2 * max_iter})
        X_adv = targeted_pgd.generate(X_test, y_target)
        targeted[eps] = X_adv
        print(f"targeted PGD L-inf eps={eps}: {np.mean(predict(X_adv) == y_target):.3f} of the digits "
              f"classified as (y + 1) mod 10")

    # Figure 1: security-evaluation curves, one panel per norm.
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (norm_name, names) in zip(axes, (("L-inf", ["FGSM L-inf", "PGD L-inf", "PGD L-inf, no random start"]),
                                            ("L2", ["FGM L2", "PGD L2"]))):
        for name in names:
            res = results[name]
            disp = SecurityEvaluationDisplay(eps_values=res["eps_values"], accuracy=res["accuracy"]).plot(ax=ax)
            disp.lines_["accuracy"].set_label(name)
        ax.legend(loc="upper right", title="attack")
        ax.set_title(f"Digits CNN under {norm_name} attacks (no defense)")
        ax.set_xlabel(f"attack budget eps ({norm_name} radius)")
        ax.set_ylabel("test accuracy (no defense)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "fgsm_pgd_accuracy_vs_eps.png"), dpi=100)
    plt.close(fig)

    # Figure 2: originals and adversarial versions of a few digits, with predicted labels.
    n_show = 8
    idx = np.array([np.flatnonzero(y_test == digit)[0] for digit in range(n_show)])
    X_show, y_show = X_test[idx], y_test[idx]
    eps_show, eps_l2_show = 0.2, 2.0
    rows = [
        ("original", X_show),
        (f"FGSM L-inf eps={eps_show}", FGSM(net, eps=eps_show, **common).generate(X_show, y_show)),
        (f"PGD L-inf eps={eps_show}", PGD(net, eps=eps_show, **common, **linf_pgd).generate(X_show, y_show)),
        (f"PGD L2 eps={eps_l2_show}", PGD(net, eps=eps_l2_show, norm=2, max_iter=max_iter,
                                          step_size=l2_step(eps_l2_show), random_state=0,
                                          **common).generate(X_show, y_show)),
        (f"targeted PGD eps={eps_show}\n(target y+1)", targeted[eps_show][idx]),
    ]
    target_row = len(rows) - 1
    fig, axes = plt.subplots(len(rows), n_show, figsize=(1.4 * n_show, 1.65 * len(rows)))
    for r, (label, X_row) in enumerate(rows):
        pred = predict(X_row)
        for c in range(n_show):
            ax = axes[r, c]
            ax.imshow(X_row[c].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            wrong = pred[c] != y_show[c]
            if r == 0:
                title = f"true {y_show[c]}, pred {pred[c]}"
            elif r == target_row:
                title = f"pred {pred[c]} (target {y_show[c] + 1})"
            else:
                title = f"pred {pred[c]}"
            ax.set_title(title, fontsize=8, color="red" if wrong else "black")
        axes[r, 0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle("Original vs adversarial digits: the CNN's prediction above each (red = misclassified)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "fgsm_pgd_digits.png"), dpi=100)
    plt.close(fig)
    print(f"figures: {os.path.abspath(out)}/fgsm_pgd_accuracy_vs_eps.png, fgsm_pgd_digits.png "
          f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="examples_out")
    main(**vars(parser.parse_args()))
