"""
Evaluating a detector honestly
==============================

A detector tested only against attacks that ignore it looks far better than it is. This example
walks through the protocol skadv's documentation recommends, with
:class:`~skadv.ModelDistillationDetector` candidates protecting a digits CNN:

1. fix each threshold on held-out clean rows (``infer_threshold``, 5 % false positives there)
   before any attack; ``contamination`` sets it in-sample, on the training rows, and flags more
   new clean rows than it says;
2. select a setting with one attack (adaptive PGD on validation rows: the *tuning* attack);
3. evaluate the selected detector on test rows with an attack it was not tuned on, the
   :class:`~skadv.attacks.AutoAttack` ensemble, and run the indicators of attack failure
   (:func:`~skadv.attacks.check_attack_failure`);
4. report, at the fixed threshold, the **evasion rate** (misclassified and not flagged: the
   headline) next to the clean cost (clean false-positive rate and clean accuracy with
   rejection), and the TPR and AUROC over the successful adversarial examples.

**What you should see**: ``infer_threshold`` flags about 5 % of clean test rows, the in-sample
``contamination`` threshold more; the adaptive attacks evade far more often than the
non-adaptive one, AutoAttack at least as often as the tuning attack; the clean cost is the same
for every attack (one fixed threshold). In the figures, the adaptive security curve lies below
the non-adaptive one, and the adaptive attacks' scores overlap the clean ones.
"""

# %%
# Classifier and candidate detectors
# ----------------------------------
# Small, seeded settings so that the documentation builds quickly (the full protocol trains
# 20 and 30 epochs, attacks with 40 PGD steps of 0.01, and evaluates 200 rows).
import warnings

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

CNN_EPOCHS, DETECTOR_EPOCHS, N_TEST, N_TUNE, N_EVAL, N_CHECK = 4, 5, 100, 60, 40, 15
PGD_SETTINGS = {"step_size": 0.05, "max_iter": 10, "random_state": 0}
AUTOATTACK_SETTINGS = {"max_iter": 10, "square_max_iter": 50, "random_state": 0}

X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=0)
X_fit, X_val, y_fit, y_val = train_test_split(X_train, y_train, test_size=0.2, stratify=y_train, random_state=0)
X_test, y_test = X_test[:N_TEST], y_test[:N_TEST]
net = make_digits_classifier(X_fit, y_fit, epochs=CNN_EPOCHS, random_state=0)
cnn = net.module_

# %%
# Thresholds on held-out clean rows
# ---------------------------------
candidates = {}
for loss_type in ("kld", "xent"):
    det = ModelDistillationDetector(cnn, input_shape=(1, 8, 8), loss_type=loss_type, contamination=0.05,
                                    epochs=DETECTOR_EPOCHS, random_state=0).fit(X_fit)
    in_sample_fpr = np.mean(det.predict(X_test) == -1)
    det.infer_threshold(X_val, threshold_perc=95)
    print(f"loss_type={loss_type}: contamination=0.05 (in-sample) flags {in_sample_fpr:.3f} of the clean "
          f"test rows; infer_threshold on held-out rows flags {np.mean(det.predict(X_test) == -1):.3f}")
    candidates[loss_type] = det

# %%
# Selection with the tuning attack
# --------------------------------
# Each candidate is attacked adaptively (PGD through classifier and detector) on validation
# rows; the setting with the lowest evasion rate is kept. ``at_threshold`` computes the
# metrics at the detector's fixed threshold.
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


tuning = {}
for loss_type, det in candidates.items():
    X_adv = PGD(det, eps=0.1, **PGD_SETTINGS).generate(X_val[:N_TUNE], y_val[:N_TUNE])
    tuning[loss_type] = at_threshold(det, net, X_val, y_val, X_adv, y_val[:N_TUNE])["evasion"]
    print(f"loss_type={loss_type}: adaptive PGD eps=0.1 evasion on validation rows {tuning[loss_type]:.3f}")
chosen = min(tuning, key=tuning.get)
det = candidates[chosen]
print(f"selected loss_type={chosen!r} (lowest evasion under the tuning attack)")

# %%
# Evaluation with a held-out attack
# ---------------------------------
# On test rows, at the fixed threshold: the non-adaptive PGD (which overstates the detector),
# the tuning attack, and the AutoAttack ensemble, which the selection never saw.
X_eval, y_eval = X_test[:N_EVAL], y_test[:N_EVAL]
auto = AutoAttack(det, eps=0.1, **AUTOATTACK_SETTINGS)
attacks = {
    "non-adaptive PGD": PGD(det, eps=0.1, adaptive=False, **PGD_SETTINGS),
    "adaptive PGD (tuning attack)": PGD(det, eps=0.1, **PGD_SETTINGS),
    "AutoAttack (held-out attack)": auto,
}
print(f"test rows, eps=0.1, threshold fixed on held-out clean rows ({N_EVAL} attacked rows)")
print(f"{'attack':30s} {'evasion':>7s} {'TPR':>6s} {'AUROC':>6s} | {'clean FPR':>9s} {'clean acc':>9s}")
attacked = {name: attack.generate(X_eval, y_eval) for name, attack in attacks.items()}
for name, X_adv in attacked.items():
    r = at_threshold(det, net, X_test, y_test, X_adv, y_eval)
    print(f"{name:30s} {r['evasion']:7.3f} {r['tpr']:6.3f} {r['auroc']:6.3f} | {r['fpr']:9.3f} "
          f"{r['clean_acc']:9.3f}")
print("evasion: misclassified and not flagged; TPR/AUROC over the successful adversarial examples;\n"
      "clean FPR / clean acc: clean test rows flagged / clean accuracy with rejection (the clean cost)")

# %%
# Indicators of attack failure
# ----------------------------
# A weak attack is not a robust detector: the checks of Pintor et al. look for the signs of an
# attack that failed (here printed instead of raised as :class:`~skadv.attacks.AttackFailureWarning`).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", AttackFailureWarning)
    report = check_attack_failure(auto, X_eval[:N_CHECK], y_eval[:N_CHECK], black_box=None, max_samples=N_CHECK)
for check_name, check in report.checks.items():
    print(f"failure check {check_name:13s} {'FIRED' if check.fired else 'ok':5s} value {check.value:.3f}")
    if check.fired:
        print(f"    {check.message}")

# %%
# Security curves
# ---------------
# The selected detector under non-adaptive (left) and adaptive (right) PGD at growing budgets.
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for ax, adaptive in zip(axes, (False, True)):
    result = security_evaluation(det, PGD, X_test[:N_EVAL], y_test[:N_EVAL], [0.0, 0.1, 0.2], adaptive=adaptive,
                                 **PGD_SETTINGS)
    SecurityEvaluationDisplay.from_evaluation(result, ax=ax, legend=False)
fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, frameon=False)
fig.tight_layout(rect=(0, 0.08, 1, 1))

# %%
# Clean against attacked scores at ``eps = 0.1``, with the fixed threshold, and the ROC of
# the same scores, for the two adaptive attacks.
fig, axes = plt.subplots(2, 2, figsize=(10, 8))
for row, (name, X_adv) in enumerate(list(attacked.items())[1:]):
    ScoreHistogramDisplay.from_estimator(det, X_test, X_adv, name=name, log_scale="auto", ax=axes[row, 0])
    plot_detection_roc(scores_clean=det.adversarial_score(X_test), scores_attacked=det.adversarial_score(X_adv),
                       name=name, ax=axes[row, 1])
fig.tight_layout()

# %%
# Trace of an attack
# ------------------
# secml's PGD with line search, adaptive, on one digit: the loss per iteration, the
# confidences, and the digit before and after with the CNN's labels.
disp = AttackTraceDisplay.from_attack(PGDLineSearch(det, eps=1.5, max_iter=20), X_test, y_test, sample_index=0,
                                      image_shape=(8, 8), predict=net.predict)
disp.figure_.tight_layout()
plt.show()
