"""Write the figures of the user guide into doc/user_guide/_images/.

Run from the repository root::

    python doc/user_guide/make_figures.py

It trains the small digits MLP of the getting-started page (seeded), fits an
:class:`skadv.AdversarialAEDetector` and a :class:`skadv.DeepNeuralRejection`
next to it, attacks the test digits with non-adaptive PGD and draws, for each,
the clean and attacked scores with the thresholds. It takes about a minute on
two CPU cores. The PNGs it writes are committed; rerun it after changing it.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from skorch import NeuralNetClassifier
from torch import nn

from skadv import AdversarialAEDetector, DeepNeuralRejection
from skadv.attacks import PGD

OUT = Path(__file__).resolve().parent / "_images"


def main():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype("float32")
    X_fit, y_fit = X[:1000], y[:1000]
    X_val = X[1000:1200]
    X_test, y_test = X[1200:], y[1200:]

    torch.manual_seed(0)
    net = NeuralNetClassifier(
        nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
        criterion=nn.CrossEntropyLoss, max_epochs=30, lr=0.1, verbose=0,
    )
    net.fit(X[:1200], y[:1200])
    X_adv = PGD(net.module_, eps=0.2, step_size=0.01, max_iter=40,
                random_state=0).generate(X_test, y_test)

    # Detector: the contamination threshold (in-sample) and a held-out one.
    det = AdversarialAEDetector(net.module_, epochs=50, random_state=0).fit(X_fit)
    in_sample = det.threshold_
    det.infer_threshold(X_val, threshold_perc=95)
    held_out = det.threshold_
    clean, attacked = det.adversarial_score(X_test), det.adversarial_score(X_adv)

    # DNR: a class score, rejected below the threshold.
    dnr = DeepNeuralRejection(net.module_, layers=["1"], random_state=0)
    dnr.fit(X_fit, y_fit).infer_threshold(X_val, threshold_perc=95)
    dnr_clean = dnr.score_samples(X_test)
    dnr_attacked = dnr.score_samples(X_adv)

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    bins = np.logspace(np.log10(max(min(clean.min(), attacked.min()), 1e-6)),
                       np.log10(max(clean.max(), attacked.max())), 40)
    ax0.hist(clean, bins=bins, alpha=0.6, label="clean test rows")
    ax0.hist(attacked, bins=bins, alpha=0.6, label="PGD rows (eps=0.2)")
    ax0.axvline(held_out, color="k", label="threshold from infer_threshold (held out)")
    ax0.axvline(in_sample, color="k", ls="--",
                label="threshold from contamination (in-sample)")
    ax0.set_xscale("log")
    ax0.set_xlabel("adversarial_score (higher = more adversarial)")
    ax0.set_ylabel("rows")
    ax0.set_title("AdversarialAEDetector: flagged above the threshold")
    ax0.legend(fontsize=8, loc="upper left")

    bins = np.linspace(min(dnr_clean.min(), dnr_attacked.min()),
                       max(dnr_clean.max(), dnr_attacked.max()), 40)
    ax1.hist(dnr_clean, bins=bins, alpha=0.6, label="clean test rows")
    ax1.hist(dnr_attacked, bins=bins, alpha=0.6, label="PGD rows (eps=0.2)")
    ax1.axvline(dnr.threshold_, color="k", label="threshold_ (held out)")
    ax1.set_xlabel("score_samples = highest class score (higher = more normal)")
    ax1.set_title("DeepNeuralRejection: rejected below the threshold")
    ax1.legend(fontsize=8, loc="upper left")
    OUT.mkdir(exist_ok=True)
    fig.savefig(OUT / "thresholds.png", dpi=90)

    flagged_clean = np.mean(clean > held_out)
    print(f"AE: in-sample threshold {in_sample:.4g}, held-out {held_out:.4g}, "
          f"clean test rows flagged {flagged_clean:.3f} "
          f"(at the in-sample threshold {np.mean(clean > in_sample):.3f}), "
          f"PGD rows flagged {np.mean(attacked > held_out):.3f}")
    print(f"DNR: threshold_ {dnr.threshold_:.4g}, clean test rows rejected "
          f"{np.mean(dnr_clean < dnr.threshold_):.3f}, PGD rows rejected "
          f"{np.mean(dnr_attacked < dnr.threshold_):.3f}")


if __name__ == "__main__":
    main()
