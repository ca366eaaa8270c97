"""
Harmful drift detection with model distillation
===============================================

The walkthrough of alibi-detect's ModelDistillation with
:class:`~skadv.ModelDistillationDetector`: a small student network is distilled from the
classifier on clean digits, and the disagreement between student and classifier scores a row.

A corruption is *harmful* to a digit when the classifier gets the clean digit right and the
corrupted one wrong, *harmless* when it gets both right
(:func:`~skadv.metrics.harmfulness`). We corrupt the test digits (noise, blur, brightness,
pixelate) at increasing severity, measure how well the score separates harmful from harmless
corruptions (AUROC), and test whole batches for drift of the score distribution with a
two-sample Kolmogorov–Smirnov test (:func:`~skadv.metrics.ks_drift_test`).

**What you should see**: the accuracy falls and the number of harmful digits rises with the
severity of every corruption; the AUROC stays above 0.5 (the grey line in the figure) for most
corruptions; the KS p-values are tiny at high severity (the batch drifted).
"""

# %%
# Classifier and detector
# -----------------------
# Small, seeded settings so that the documentation builds quickly (the full walkthrough trains the
# CNN 20 epochs and the student 30).
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_auc_score

from skadv import ModelDistillationDetector
from skadv.corruptions import CORRUPTIONS, corrupt
from skadv.datasets import load_digits8, make_digits_classifier
from skadv.metrics import harmfulness, ks_drift_test

CNN_EPOCHS, STUDENT_EPOCHS = 5, 5

X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=0)
net = make_digits_classifier(X_train, y_train, epochs=CNN_EPOCHS, random_state=0)
cnn = net.module_.eval()


def predict(X):
    return net.predict(X.reshape(-1, 1, 8, 8))


det = ModelDistillationDetector(cnn, input_shape=(1, 8, 8), epochs=STUDENT_EPOCHS, temperature=1.0,
                                random_state=0).fit(X_train)

# %%
# Harmful against harmless corruptions
# ------------------------------------
# One row per corruption and severity: the classifier's accuracy on the corrupted digits, how
# many corruptions were harmful, the AUROC of the score for harmful against harmless ones, and
# the KS test's p-value for the whole batch against the clean test digits' scores.
pred_clean = predict(X_test)
reference = det.adversarial_score(X_test)
severities = (1, 2, 3, 4, 5)

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
plt.show()
