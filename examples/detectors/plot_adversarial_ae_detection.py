"""
Detection and correction with an adversarial autoencoder
========================================================

The walkthrough of alibi-detect's AdversarialAE (Vacanti & Van Looveren, 2020) with
:class:`~skadv.AdversarialAEDetector`: an autoencoder trained so that the classifier's prediction
on the reconstruction matches its prediction on the input. Its score is the KL divergence between
the two predictions; ``correct()`` classifies a flagged row from its reconstruction.

We fit three variants (the default temperature T=1, a sharper teacher T=0.5, and extra KL terms
on a hidden layer of the classifier), attack the digits with FGSM and PGD, and finally attack the
best variant *adaptively*: a detector is only as good as its adaptive evaluation.

**What you should see**: every variant separates PGD digits from clean ones (AUROC well above
0.5); "w/ det." (attacked digits flagged or still classified right) is never below "no def.";
the adaptive attack flags far fewer digits than the non-adaptive one, and its success rate (the
share misclassified and not flagged) is the number to report. In the figures, the PGD scores sit
to the right of the clean ones, and the reconstructions do not look like digits (the autoencoder
is trained to keep the CNN's prediction, not the pixels).
"""

# sphinx_gallery_thumbnail_number = 2

# %%
# Classifier and attacks
# ----------------------
# The settings are small so that the documentation builds quickly (the full walkthrough
# trains the CNN 25 epochs and the detectors 60, and attacks every test digit with 40 steps).
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.model_selection import train_test_split

from skadv import AdversarialAEDetector
from skadv.attacks import FGSM, PGD
from skadv.datasets import load_digits8, make_digits_classifier
from skadv.metrics import accuracy_with_rejection, detection_auroc, tpr_at_fpr
from skadv.plotting import ScoreHistogramDisplay

CNN_EPOCHS, DETECTOR_EPOCHS, PGD_STEPS, N_TEST = 6, 8, 20, 120

X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=0)
X_fit, X_val, y_fit, _ = train_test_split(X_train, y_train, test_size=0.2, stratify=y_train, random_state=0)
X_test, y_test = X_test[:N_TEST], y_test[:N_TEST]
net = make_digits_classifier(X_fit, y_fit, epochs=CNN_EPOCHS, random_state=0)
cnn = net.module_.eval()


def predict(X):
    return net.predict(np.asarray(X, dtype=np.float32).reshape(-1, 1, 8, 8))


print(f"CNN clean test accuracy: {np.mean(predict(X_test) == y_test):.3f} ({len(X_test)} digits)")

shape = {"input_shape": (1, 8, 8)}
pgd = {"eps": 0.2, "step_size": 0.02, "max_iter": PGD_STEPS, "random_state": 0}
attacks = {
    "FGSM eps=0.1": FGSM(cnn, eps=0.1, **shape).generate(X_test, y_test),
    "PGD eps=0.2": PGD(cnn, **pgd, **shape).generate(X_test, y_test),
}
for name, X_adv in attacks.items():
    print(f"{name:13s} CNN accuracy {np.mean(predict(X_adv) == y_test):.3f}")

# %%
# Three detectors
# ---------------
# Each detector learns from clean digits only. Its threshold is fixed on held-out clean
# validation digits (5 % of them flagged) with ``infer_threshold``, before any attack.
VARIANTS = {
    "default (T=1)": {},
    "T=0.5": {"temperature": 0.5},
    "hidden KLD": {"hidden_layer_kld": {"classifier.2": 16}},
}
detectors = {
    name: AdversarialAEDetector(cnn, epochs=DETECTOR_EPOCHS, random_state=0, **shape, **params)
    .fit(X_fit)
    .infer_threshold(X_val, threshold_perc=95)
    for name, params in VARIANTS.items()
}

print("Detection of all attacked digits (threshold: 5 % of clean validation digits flagged)")
header = (f"{'variant':14s} {'attack':13s} {'AUROC':>6s} {'TPR@5%':>7s} {'clean FPR':>9s} "
          f"{'no def.':>7s} {'w/ det.':>7s} {'corrected':>9s} {'AE label':>8s}")
print(header)
print("-" * len(header))
clean_scores, pgd_scores, best = {}, {}, (None, -np.inf)
for name, det in detectors.items():
    clean = det.adversarial_score(X_test)
    clean_scores[name] = clean
    for attack_name, X_adv in attacks.items():
        result = det.correct(X_adv)
        auroc = detection_auroc(clean, result.instance_score)
        with_detection = accuracy_with_rejection(y_test, result.no_defense,
                                                 rejected=result.is_adversarial == 1, attacked=True)
        print(f"{name:14s} {attack_name:13s} {auroc:6.3f} "
              f"{tpr_at_fpr(clean, result.instance_score, fpr=0.05):7.3f} {np.mean(clean > det.threshold_):9.3f} "
              f"{np.mean(result.no_defense == y_test):7.3f} {with_detection:7.3f} "
              f"{np.mean(result.corrected == y_test):9.3f} {np.mean(result.defense == y_test):8.3f}")
        if attack_name.startswith("PGD"):
            pgd_scores[name] = result.instance_score
            if auroc > best[1]:
                best = (name, auroc)
print("clean FPR: test digits flagged; no def.: CNN accuracy on attacked digits; w/ det.: attacked digit "
      "flagged or still classified right;\n"
      "corrected: accuracy of correct() (reconstruction's label where flagged);\n"
      "AE label: accuracy of the reconstruction's label on every attacked digit (what correct() could reach)")
print("clean accuracy after correct(): "
      + ", ".join(f"{n} {np.mean(d.correct(X_test).corrected == y_test):.3f}" for n, d in detectors.items()))

# %%
# The adversarial scores of clean and PGD digits, with each detector's threshold (log axis:
# KL scores span decades; the few (near-)zero scores are drawn at 1e-9).
fig, axes = plt.subplots(1, len(detectors), figsize=(4.3 * len(detectors), 3.5))
for ax, (name, det) in zip(axes, detectors.items()):
    ScoreHistogramDisplay.from_predictions(np.maximum(clean_scores[name], 1e-9), np.maximum(pgd_scores[name], 1e-9),
                                           threshold=det.threshold_, name=name, ax=ax, log_scale=True, density=False)
fig.suptitle("AdversarialAE scores: clean vs PGD eps=0.2 (non-adaptive)")
fig.tight_layout()

# %%
# Adaptive attack
# ---------------
# Passing the detector itself as the attack's target makes the attack adaptive: PGD then
# seeks a wrong class that the detector does not flag.
best_name = best[0]
det = detectors[best_name]
X_ada = PGD(det, **pgd).generate(X_test, y_test)
result = det.correct(X_ada)
flagged = result.is_adversarial == 1
evaded = (result.no_defense != y_test) & ~flagged
print(f"Adaptive PGD eps=0.2 against the variant with the best PGD AUROC above ({best_name}):")
with_detection = accuracy_with_rejection(y_test, result.no_defense, rejected=flagged, attacked=True)
print(f"  CNN accuracy {np.mean(result.no_defense == y_test):.3f}, flagged {flagged.mean():.3f}, "
      f"AUROC {detection_auroc(clean_scores[best_name], result.instance_score):.3f}, "
      f"accuracy with detection {with_detection:.3f}, "
      f"corrected {np.mean(result.corrected == y_test):.3f}")
print(f"  attacker's success (misclassified and not flagged): {evaded.mean():.3f}")

# %%
# Reconstructions
# ---------------
# Original, PGD and reconstructed PGD digits with the CNN's label on each (red = wrong).
X_pgd = attacks["PGD eps=0.2"]
n_show = 8
with torch.inference_mode():
    recon = det.ae_(torch.from_numpy(X_pgd[:n_show].reshape(-1, 1, 8, 8))).numpy().reshape(n_show, 64)
rows = [("original", X_test[:n_show], predict(X_test[:n_show])),
        ("PGD eps=0.2", X_pgd[:n_show], predict(X_pgd[:n_show])),
        ("AE(PGD digit)", np.clip(recon, 0, 1), predict(recon))]
fig, axes = plt.subplots(3, n_show, figsize=(1.3 * n_show, 4.9))
for r, (label, images, preds) in enumerate(rows):
    for c in range(n_show):
        ax = axes[r, c]
        ax.imshow(images[c].reshape(8, 8), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"pred {preds[c]}", fontsize=9, color="k" if preds[c] == y_test[c] else "r")
        if c == 0:
            ax.set_ylabel(label, fontsize=9)
fig.suptitle(f"AdversarialAE ({best_name}): CNN label per image, red = wrong. The autoencoder is trained to\n"
             "keep the CNN's prediction (w_recon=0), not the pixels, so reconstructions need not look like digits")
fig.tight_layout()
plt.show()
