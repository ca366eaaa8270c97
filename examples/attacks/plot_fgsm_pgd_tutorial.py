"""
FGSM and PGD on a digits CNN
============================

The attacks of the Kolter–Madry tutorial "Adversarial robustness: theory and practice"
(chapter 3), on scikit-learn's 8×8 digits instead of MNIST: FGSM (one signed-gradient step)
and PGD (projected gradient descent from a random start) in the L-inf and the L2 ball, with and
without random start, and a *targeted* PGD.

No detector is involved: this is the baseline that the detectors of the other examples protect.

**What you should see**: the accuracy falls as the budget ``eps`` grows, PGD lower than FGSM at
every budget; the targeted PGD sends more digits to its target class as ``eps`` grows; in the
figures, adversarial digits that still look like the original but are classified wrong (red).
"""

# sphinx_gallery_thumbnail_number = 2

# %%
# Train the classifier
# --------------------
# A small CNN trained through skorch on the digits scaled to [0, 1]. The settings below are
# small so that the documentation builds quickly; Madry et al. use 40 steps of 0.01 and the
# tutorial 20 epochs: raise ``EPOCHS``, ``MAX_ITER`` and ``N_TEST`` for numbers worth reporting.
import matplotlib.pyplot as plt
import numpy as np

from skadv.attacks import FGSM, PGD
from skadv.datasets import load_digits8, make_digits_classifier
from skadv.metrics import security_evaluation
from skadv.plotting import SecurityEvaluationDisplay

EPOCHS, MAX_ITER, STEP_SIZE, N_TEST = 5, 10, 0.04, 150

X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=0)
X_test, y_test = X_test[:N_TEST], y_test[:N_TEST]
net = make_digits_classifier(X_train, y_train, epochs=EPOCHS, random_state=0)


def predict(X):
    return net.predict(X.reshape(-1, 1, 8, 8))


print(f"CNN trained on {len(X_train)} digits; clean accuracy on {len(X_test)} test digits: "
      f"{np.mean(predict(X_test) == y_test):.3f}")

# %%
# Accuracy under attack
# ---------------------
# The skorch net is attacked directly: its module returns logits, and each row is reshaped to
# the ``(1, 8, 8)`` image the CNN takes. :func:`~skadv.metrics.security_evaluation` runs an
# attack at every budget and reports the accuracy; ``eps = 0`` is the clean accuracy. The L2
# step follows Madry et al.'s rule of thumb ``2.5 * eps / n_steps``, so L2 PGD is one
# evaluation per budget.
common = dict(input_shape=(1, 8, 8))
linf_eps = [0.0, 0.05, 0.1, 0.2, 0.3]
l2_eps = [0.0, 0.5, 1.0, 2.0, 3.0]
linf_pgd = dict(max_iter=MAX_ITER, step_size=STEP_SIZE, random_state=0)


def l2_step(eps):
    return 2.5 * eps / MAX_ITER


runs = {
    "FGSM L-inf": (FGSM, linf_eps, {}),
    "PGD L-inf": (PGD, linf_eps, linf_pgd),
    "PGD L-inf, no random start": (PGD, linf_eps, dict(linf_pgd, random_start=False)),
    "FGM L2": (FGSM, l2_eps, dict(norm=2)),
}
images = X_test.reshape(-1, 1, 8, 8)
results = {name: security_evaluation(net, attack, images, y_test, eps, **params)
           for name, (attack, eps, params) in runs.items()}
l2_pgd = [security_evaluation(net, PGD, images, y_test, [eps], norm=2, max_iter=MAX_ITER,
                              step_size=l2_step(eps), random_state=0) for eps in l2_eps[1:]]
results["PGD L2"] = {
    "eps_values": np.array(l2_eps),
    "accuracy": np.r_[results["FGM L2"]["accuracy"][0], [r.accuracy[0] for r in l2_pgd]],
}

print("accuracy under attack (eps = 0 is the clean accuracy)")
for norm_name, eps_values in (("L-inf", linf_eps), ("L2", l2_eps)):
    print(f"{norm_name + ' attack':28s}" + "".join(f" {'eps=' + format(e, 'g'):>8s}" for e in eps_values))
    for name, res in results.items():
        if ("L-inf" in name) == (norm_name == "L-inf"):
            print(f"{name:28s}" + "".join(f" {a:8.3f}" for a in res["accuracy"]))

# %%
# The same numbers as curves, one panel per norm, drawn with
# :class:`~skadv.plotting.SecurityEvaluationDisplay`.
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
panels = (("L-inf", ["FGSM L-inf", "PGD L-inf", "PGD L-inf, no random start"]), ("L2", ["FGM L2", "PGD L2"]))
for ax, (norm_name, names) in zip(axes, panels):
    for name in names:
        res = results[name]
        disp = SecurityEvaluationDisplay(eps_values=res["eps_values"], accuracy=res["accuracy"]).plot(ax=ax)
        disp.lines_["accuracy"].set_label(name)
    ax.legend(loc="upper right", title="attack")
    ax.set_title(f"Digits CNN under {norm_name} attacks (no defense)")
    ax.set_xlabel(f"attack budget eps ({norm_name} radius)")
    ax.set_ylabel("test accuracy (no defense)")
fig.tight_layout()

# %%
# Targeted PGD
# ------------
# A targeted attack drives every digit towards a class of the attacker's choice, here
# ``(y + 1) mod 10``: the labels passed to ``generate`` are the targets.
y_target = (y_test + 1) % 10
targeted = {}
for eps in (0.1, 0.2, 0.3):
    targeted_pgd = PGD(net, eps=eps, targeted=True, **common, **{**linf_pgd, "max_iter": 2 * MAX_ITER})
    targeted[eps] = targeted_pgd.generate(X_test, y_target)
    print(f"targeted PGD L-inf eps={eps}: {np.mean(predict(targeted[eps]) == y_target):.3f} of the digits "
          f"classified as (y + 1) mod 10")

# %%
# What the adversarial digits look like
# -------------------------------------
# One digit of each class, attacked at ``eps = 0.2`` (L-inf) or ``eps = 2`` (L2), with the
# CNN's prediction above each image; red marks a misclassified digit.
n_show = 8
idx = np.array([np.flatnonzero(y_test == digit)[0] for digit in range(n_show)])
X_show, y_show = X_test[idx], y_test[idx]
eps_show, eps_l2_show = 0.2, 2.0
rows = [
    ("original", X_show),
    (f"FGSM L-inf eps={eps_show}", FGSM(net, eps=eps_show, **common).generate(X_show, y_show)),
    (f"PGD L-inf eps={eps_show}", PGD(net, eps=eps_show, **common, **linf_pgd).generate(X_show, y_show)),
    (f"PGD L2 eps={eps_l2_show}", PGD(net, eps=eps_l2_show, norm=2, max_iter=MAX_ITER, step_size=l2_step(eps_l2_show),
                                      random_state=0, **common).generate(X_show, y_show)),
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
        if r == 0:
            title = f"true {y_show[c]}, pred {pred[c]}"
        elif r == target_row:
            title = f"pred {pred[c]} (target {y_show[c] + 1})"
        else:
            title = f"pred {pred[c]}"
        ax.set_title(title, fontsize=8, color="red" if pred[c] != y_show[c] else "black")
    axes[r, 0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
fig.suptitle("Original vs adversarial digits: the CNN's prediction above each (red = misclassified)")
fig.tight_layout()
plt.show()
