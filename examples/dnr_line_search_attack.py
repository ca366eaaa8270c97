"""Deep Neural Rejection against an adaptive line-search attack.

The seed walkthrough of secml's DNR tutorial (Sotgiu et al., 2020), on load_digits:

1. train a small CNN (skorch) and fit DeepNeuralRejection on three of its layers
   (after the first conv, after the pooling, and the penultimate dense layer): one RBF SVM
   per layer, combined by another RBF SVM;
2. set the reject threshold so that 10 % of clean validation digits are rejected
   (``compute_threshold(X_val, 0.1)``, as secml) and measure clean accuracy with rejection;
3. attack with secml's PGD with line search (L2, ``PGDLineSearch``), adaptive: it knows
   the reject option and seeks a wrong class whose score also clears the threshold; plot
   the security evaluation (accuracy versus L2 budget) of DNR against the CNN alone;
4. trace the attack on one digit: the objective per iteration, DNR's class scores per
   iteration, and the original and adversarial digits.

    python examples/dnr_line_search_attack.py [--quick] [--out DIR]
"""

import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

from skadv import DeepNeuralRejection
from skadv.attacks import PGDLineSearch
from skadv.datasets import load_digits8, make_digits_classifier
from skadv.metrics import accuracy_with_rejection, security_evaluation
from skadv.plotting import AttackTraceDisplay, SecurityEvaluationDisplay


def main(quick=False, out="examples_out"):
    start = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=0)
    X_fit, X_val, y_fit, _ = train_test_split(X_train, y_train, test_size=0.2, stratify=y_train, random_state=0)
    if quick:
        X_fit, y_fit = X_fit[:500], y_fit[:500]
    net = make_digits_classifier(X_fit, y_fit, epochs=8 if quick else 25, random_state=0)
    cnn = net.module_.eval()

    def predict(X):
        return net.predict(np.asarray(X, dtype=np.float32).reshape(-1, 1, 8, 8))

    t0 = time.perf_counter()
    dnr = DeepNeuralRejection(cnn, layers=["features.1", "features.4", "classifier.2"], input_shape=(1, 8, 8),
                              cv=3 if quick else 5, random_state=0).fit(X_fit, y_fit)
    dnr.set_params(threshold=dnr.compute_threshold(X_val, 0.1))
    print(f"DNR fitted in {time.perf_counter() - t0:.1f} s on {len(X_fit)} digits; "
          f"threshold {dnr.threshold:.4f} rejects 10 % of {len(X_val)} clean validation digits")

    pred = dnr.predict(X_test)
    rejected = pred == -1
    print(f"clean test digits ({len(X_test)}): CNN accuracy {np.mean(predict(X_test) == y_test):.3f}; "
          f"DNR rejects {rejected.mean():.3f}, accuracy with rejection {accuracy_with_rejection(y_test, pred):.3f}, "
          f"accuracy on accepted digits {np.mean(pred[~rejected] == y_test[~rejected]):.3f}")

    # Security evaluation: DNR under the adaptive attack vs the CNN under the same attack.
    n_eval = 60 if quick else 150
    X_eval, y_eval = X_test[:n_eval], y_test[:n_eval]
    eps_values = [0.0, 0.5, 1.0, 2.0] if quick else [0.0, 0.25, 0.5, 1.0, 1.5, 2.0]
    attack = {"step_size": 0.1, "max_iter": 15 if quick else 40}
    # DNR classifies accepted digits itself, so its accuracy uses its own labels (-1 = rejected).
    rejection_rate, dnr_accuracy, evaded, adversarial = [], [], [], {}
    for eps in eps_values:
        X_adv = PGDLineSearch(dnr, eps=eps, **attack).generate(X_eval, y_eval) if eps > 0 else X_eval
        pred = adversarial[eps] = dnr.predict(X_adv)
        rejection_rate.append(np.mean(pred == -1))
        dnr_accuracy.append(accuracy_with_rejection(y_eval, pred, attacked=eps > 0))
        evaded.append(np.mean((pred != -1) & (pred != y_eval)))
    # The CNN alone under the same attack (images shaped (n, 1, 8, 8): security_evaluation
    # reads the CNN's labels with rows as given).
    cnn_eval = security_evaluation(cnn, PGDLineSearch, X_eval.reshape(-1, 1, 8, 8), y_eval, eps_values, **attack)
    print(f"\nPGD with line search (L2) on {n_eval} test digits; DNR attacked adaptively")
    print(f"{'eps':>5s} {'CNN acc':>8s} {'DNR rejected':>12s} {'DNR acc':>7s} {'evaded':>7s}")
    for i, eps in enumerate(eps_values):
        print(f"{eps:5.2f} {cnn_eval.accuracy[i]:8.3f} {rejection_rate[i]:12.3f} {dnr_accuracy[i]:7.3f} "
              f"{evaded[i]:7.3f}")
    print("CNN acc: accuracy of the CNN alone under the attack; DNR acc: accuracy with rejection (clean: a "
          "rejection is an error;\nattacked: a rejection defends); evaded: attacked digits DNR accepts and "
          "misclassifies")

    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    SecurityEvaluationDisplay(eps_values=eps_values, accuracy=cnn_eval.accuracy, detection_rate=rejection_rate,
                              accuracy_with_rejection=dnr_accuracy).plot(ax=ax)
    labels = ["CNN alone: accuracy", "DNR: accuracy with rejection", "DNR: rejection rate"]
    for line, label in zip(ax.get_lines(), labels):
        line.set_label(label)
    ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("L2 attack budget eps\n(at eps=0 a rejected digit is an error; under attack it is defended)")
    ax.set_title("Adaptive PGD with line search against DNR")
    fig.tight_layout()
    path_sec = os.path.join(out, "dnr_security_evaluation.png")
    fig.savefig(path_sec, dpi=100)
    plt.close(fig)

    # Trace of a digit DNR accepts and classifies right, which the attack at the largest budget
    # gets through (accepted, wrong).
    eps_trace = eps_values[-1]
    evading = np.flatnonzero((adversarial[0.0] == y_eval) & (adversarial[eps_trace] != -1)
                             & (adversarial[eps_trace] != y_eval))
    index = int(evading[0]) if evading.size else 0
    disp = AttackTraceDisplay.from_attack(PGDLineSearch(dnr, eps=eps_trace, **attack), X_eval, y_eval,
                                          sample_index=index, image_shape=(8, 8))
    # DNR's adaptive logits are raw SVM scores (threshold last), so the display plots the scores
    # themselves: a softmax of scores within about one unit of each other would stay near 1/11.
    trace = disp.trace
    disp.axes_[1].set_title("DNR scores (reject if max < threshold)")
    x_adv = disp.x_adversarial.reshape(1, -1)
    for panel, label in zip(disp.axes_[2:], [dnr.predict(X_eval[index : index + 1])[0], dnr.predict(x_adv)[0]]):
        said = "rejected" if label == -1 else f"DNR: {label}"
        panel.set_title(f"{panel.get_title()} ({said})")
    disp.axes_[0].set(ylabel="objective", title="max(true, reject) - best other")
    disp.figure_.suptitle(f"PGD with line search against DNR, test digit {index} (true {y_eval[index]}), "
                          f"L2 eps={eps_trace}")
    disp.figure_.set_size_inches(14, 3.6)
    disp.figure_.tight_layout()
    path_trace = os.path.join(out, "dnr_attack_trace.png")
    disp.figure_.savefig(path_trace, dpi=100)
    plt.close(disp.figure_)
    true, other = trace.true_score[:, 0], trace.max_other_score[:, 0]
    print(f"trace of test digit {index}: objective {trace.loss[0, 0]:+.3f} -> {trace.loss[-1, 0]:+.3f} in "
          f"{trace.n_iter - 1} iterations; true-class score {true[0]:+.3f} -> {true[-1]:+.3f}, best other "
          f"{other[0]:+.3f} -> {other[-1]:+.3f} (threshold {dnr.threshold:+.3f})")
    print(f"figures: {path_sec}, {path_trace}")
    print(f"finished in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="examples_out")
    main(**vars(parser.parse_args()))
