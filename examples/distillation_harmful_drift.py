"""Harmful drift detection with model distillation.

The seed walkthrough of alibi-detect's ModelDistillation, on load_digits:

1. train a classifier (skorch) and distil it into a small student (ModelDistillationDetector);
2. corrupt the test images (noise, blur, brightness, pixelate) at increasing severity;
3. split corrupted inputs into *harmful* (right clean, wrong corrupted) and *harmless* ones and
   measure how well the distillation score separates them (AUROC);
4. test whole batches for drift of the score distribution (two-sample KS test).

    python examples/distillation_harmful_drift.py [--quick] [--out DIR]
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_auc_score

from skadv import ModelDistillationDetector
from skadv.corruptions import CORRUPTIONS, corrupt
from skadv.datasets import load_digits8, make_digits_classifier
from skadv.metrics import harmfulness, ks_drift_test


def main(quick=False, out="examples_out"):
    os.makedirs(out, exist_ok=True)
    X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=0)
    net = make_digits_classifier(X_train, y_train, epochs=5 if quick else 20, random_state=0)
    cnn = net.module_.eval()

    def predict(X):
        return net.predict(X.reshape(-1, 1, 8, 8))

    det = ModelDistillationDetector(cnn, input_shape=(1, 8, 8), epochs=5 if quick else 30,
                                    temperature=1.0, random_state=0).fit(X_train)
    pred_clean = predict(X_test)
    reference = det.adversarial_score(X_test)
    severities = (1, 3, 5) if quick else (1, 2, 3, 4, 5)

    fig, ax = plt.subplots(figsize=(6, 4))
    print(f"{'corruption':15s} {'sev':>3s} {'acc':>5s} {'harmful':>7s} {'AUROC':>6s} {'KS p':>8s}")
    for kind in CORRUPTIONS:
        aurocs = []
        for severity in severities:
            X_bad = corrupt(X_test, kind, severity, random_state=0).astype(np.float32)
            pred_bad = predict(X_bad)
            harm = harmfulness(y_test, pred_clean, pred_bad)
            scores = det.adversarial_score(X_bad)
            defined = harm.harmful | harm.harmless
            auroc = (roc_auc_score(harm.harmful[defined], scores[defined])
                     if harm.harmful.any() and harm.harmless.any() else np.nan)
            aurocs.append(auroc)
            drift = ks_drift_test(reference, scores)
            print(f"{kind:15s} {severity:3d} {np.mean(pred_bad == y_test):5.2f} {harm.harmful.sum():7d} "
                  f"{auroc:6.3f} {drift.p_value:8.2g}")
        ax.plot(severities, aurocs, marker="o", label=kind)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="severity", ylabel="AUROC harmful vs harmless", title="Distillation score on corrupted digits")
    ax.legend()
    fig.tight_layout()
    path = os.path.join(out, "distillation_harmful_auroc.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"figure: {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="examples_out")
    main(**vars(parser.parse_args()))
