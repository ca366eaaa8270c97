"""
A VAE for robustness: consistency, purification, calibration
============================================================

The walkthrough "Using VAE for robustness" with :class:`~skadv.VAEDetector`: a variational
autoencoder learns the clean digits; to score an input, K latent codes are drawn from its
posterior, decoded and classified. Clean digits mostly get one label over the K
reconstructions, adversarial ones several. The same VAE purifies inputs (classify the
reconstruction instead, ``correct``), relates its reconstruction loss to the classifier's
confidence (:func:`~skadv.calibration_analysis`), and flags out-of-distribution inputs by their
reconstruction error.

**What you should see**: most clean digits get one label over the reconstructions, PGD digits
more; every score has an AUROC above 0.5; purification recovers part of the accuracy lost to the
attack; uniform noise images are flagged almost always by their reconstruction error, although
the CNN is confident on many of them.
"""

# %%
# Classifier, detector and attack
# -------------------------------
# Small, seeded settings so that the documentation builds quickly (the full walkthrough
# trains the CNN 20 epochs and the VAE 100, and attacks every test digit with 40 PGD steps).
# We use the consistency score here; the default, ``score_type='combined'``, adds the
# reconstruction error.
import copy

import matplotlib.pyplot as plt
import numpy as np

from skadv import VAEDetector, calibration_analysis
from skadv.attacks import PGD
from skadv.datasets import load_digits8, make_digits_classifier
from skadv.metrics import detection_auroc, tpr_at_fpr
from skadv.plotting import (
    DistinctLabelsDisplay,
    ReconstructionCalibrationDisplay,
    ScoreHistogramDisplay,
)

CNN_EPOCHS, VAE_EPOCHS, PGD_STEPS, STEP_SIZE, N_TEST = 5, 20, 10, 0.04, 200

X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=0)
X_test, y_test = X_test[:N_TEST], y_test[:N_TEST]
net = make_digits_classifier(X_train, y_train, epochs=CNN_EPOCHS, random_state=0)
det = VAEDetector(net.module_, input_shape=(1, 8, 8), latent_dim=8, n_samples=10, score_type="consistency",
                  epochs=VAE_EPOCHS, random_state=0).fit(X_train)
print(f"VAEDetector fitted on {len(X_train)} clean digits (K={det.n_samples} reconstructions per input, "
      f"final ELBO loss {det.history_[-1]['train_loss']:.1f}); threshold flags 5 % of them")

# Non-adaptive PGD: the attacker sees the classifier only.
eps = 0.2
X_adv = PGD(det, eps=eps, adaptive=False, step_size=STEP_SIZE, max_iter=PGD_STEPS,
            random_state=0).generate(X_test, y_test)
clean, attacked = det.correct(X_test), det.correct(X_adv)
print(f"PGD L-inf eps={eps} on {len(X_test)} test digits: CNN accuracy "
      f"{np.mean(clean.no_defense == y_test):.3f} clean -> {np.mean(attacked.no_defense == y_test):.3f} attacked")

# %%
# Distinct labels over the K reconstructions
# ------------------------------------------
counts_clean, counts_adv = det.distinct_labels(X_test), det.distinct_labels(X_adv)
print(f"distinct labels over K reconstructions: clean mean {counts_clean.mean():.2f} "
      f"({np.mean(counts_clean == 1):.0%} with one label), adversarial mean {counts_adv.mean():.2f} "
      f"({np.mean(counts_adv == 1):.0%} with one label)")

fig, ax = plt.subplots(figsize=(6, 4))
DistinctLabelsDisplay.from_predictions(counts_clean, counts_adv, n_samples=det.n_samples,
                                       names=("clean digits", f"PGD eps={eps}"), ax=ax)
ax.set_title(f"CNN labels over K={det.n_samples} VAE reconstructions per input")
fig.tight_layout()

# %%
# Detection by each score
# -----------------------
# ``score_type`` and ``consistency`` only change how scores are computed from the fitted VAE,
# so one fitted detector serves every variant (a copy keeps ``det``'s own settings).
print(f"{'score':32s} {'AUROC':>6s} {'TPR@5%FPR':>9s}   (positives: all attacked digits)")
variants = [("consistency (KL, default)", dict(score_type="consistency", consistency="kl")),
            ("consistency (disagreement)", dict(score_type="consistency", consistency="disagreement")),
            ("reconstruction error", dict(score_type="reconstruction")),
            ("combined", dict(score_type="combined"))]
for name, params in variants:
    variant = copy.deepcopy(det).set_params(**params)
    s_clean, s_adv = variant.adversarial_score(X_test), variant.adversarial_score(X_adv)
    print(f"{name:32s} {detection_auroc(s_clean, s_adv):6.3f} {tpr_at_fpr(s_clean, s_adv, fpr=0.05):9.3f}")

# %%
# Purification
# ------------
# Classify the mean reconstruction instead of the input: for every input, or only for the
# inputs the detector flags (``corrected``).
print(f"{'accuracy':40s} {'clean':>6s} {'attacked':>8s}")
for label, key in (("no defense (input)", "no_defense"), ("reconstruction, every input", "defense"),
                   ("corrected (reconstruction where flagged)", "corrected")):
    print(f"{label:40s} {np.mean(clean[key] == y_test):6.3f} {np.mean(attacked[key] == y_test):8.3f}")
print(f"{'flagged by the detector':40s} {clean.is_adversarial.mean():6.3f} {attacked.is_adversarial.mean():8.3f}")

# %%
# Calibration and out-of-distribution inputs
# ------------------------------------------
# The reconstruction loss per bin of the CNN's confidence. Then uniform noise images, flagged
# by the reconstruction error with a threshold at the 95th percentile of the clean training
# scores (``infer_threshold``).
analysis = calibration_analysis(det, X_test, y_test, n_bins=5)
print("calibration on clean test digits (CNN confidence bin: rows, mean reconstruction loss, accuracy)")
for lo, hi, n, loss, acc in zip(analysis.bin_edges[:-1], analysis.bin_edges[1:], analysis.count,
                                analysis.mean_loss, analysis.accuracy):
    print(f"  [{lo:.1f}, {hi:.1f}): {n:4d} rows, loss {loss:.4f}, accuracy {acc:.3f}")

noise = np.random.RandomState(0).uniform(0, 1, size=(len(X_test), X_test.shape[1])).astype(np.float32)
ood = copy.deepcopy(det).set_params(score_type="reconstruction").infer_threshold(X_train, threshold_perc=95)
rec_clean, rec_noise = ood.adversarial_score(X_test), ood.adversarial_score(noise)
print(f"uniform noise images: reconstruction error {np.median(rec_noise):.3f} (median) vs "
      f"{np.median(rec_clean):.3f} on clean digits; AUROC {detection_auroc(rec_clean, rec_noise):.3f}; "
      f"flagged {np.mean(ood.predict(noise) == -1):.0%} of noise, {np.mean(ood.predict(X_test) == -1):.0%} "
      f"of clean test digits")
noise_confidence = calibration_analysis(det, noise).confidence
print(f"yet the CNN is over 80 % confident on {np.mean(noise_confidence > 0.8):.0%} of the noise images "
      f"(overconfidence off the data manifold)")

fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
for ax, (name, X_part) in zip(axes, (("clean test digits", X_test), (f"PGD eps={eps} digits", X_adv),
                                     ("uniform noise images", noise))):
    ReconstructionCalibrationDisplay.from_estimator(det, X_part, n_bins=5, ax=ax)
    ax.set_title(f"{name}\n(number of inputs above each bar)")
fig.suptitle("Reconstruction loss against CNN confidence")
fig.tight_layout()

# %%
# The two scores' distributions: consistency for clean against PGD digits, reconstruction
# error for clean digits against noise (counts on log-spaced bins).
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
kl = det.adversarial_score(X_test), det.adversarial_score(X_adv)
ScoreHistogramDisplay.from_predictions(*kl, threshold=det.threshold_, ax=axes[0], log_scale=True,
                                       density=False, name=f"consistency score: clean vs PGD eps={eps}")
axes[0].set_xlabel("consistency score: mean KL(M(x) || M(reconstruction)), log scale")
ScoreHistogramDisplay.from_predictions(rec_clean, rec_noise, threshold=ood.threshold_, ax=axes[1],
                                       log_scale=True, density=False,
                                       name="reconstruction error: clean vs uniform noise")
axes[1].set_xlabel("reconstruction error (MSE per pixel), log scale")
for ax, attacked_name in zip(axes, (f"PGD eps={eps}", "uniform noise")):
    names = {"clean": "clean digits", "attacked": attacked_name,
             "threshold (flagged above)": "threshold (5 % FPR, flagged above)"}
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, [names[label] for label in labels])
fig.tight_layout()
plt.show()
