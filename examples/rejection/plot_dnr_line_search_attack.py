"""
Deep Neural Rejection against an adaptive line-search attack
============================================================

The walkthrough of secml's DNR tutorial (Sotgiu et al., 2020) with
:class:`~skadv.DeepNeuralRejection`: one-vs-all RBF SVMs on three hidden layers of a CNN,
combined by another RBF SVM, and a reject option (label -1) for rows whose best class score is
below a threshold. It is attacked with secml's PGD with line search
(:class:`~skadv.attacks.PGDLineSearch`, L2), adaptively: the attack knows the reject option and
seeks a wrong class whose score also clears the threshold.

**What you should see**: DNR rejects about 10 % of the clean test digits (the threshold was set
for that on validation digits), and its accuracy on the digits it accepts is higher than the
CNN's; under attack, the CNN's accuracy falls with the budget while DNR rejects more and more of
the attacked digits; the trace shows the attack's objective falling until a wrong class's score
clears the threshold.
"""

# %%
# Classifier and DNR
# ------------------
# Small, seeded settings so that the documentation builds quickly (the full walkthrough fits
# on all training digits with 5 folds and attacks 150 digits with 40 iterations). The layers are
# named as ``cnn.named_modules()`` names them: after the first convolution, after the pooling,
# and the penultimate dense layer.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

from skadv import DeepNeuralRejection
from skadv.attacks import PGDLineSearch
from skadv.datasets import load_digits8, make_digits_classifier
from skadv.metrics import accuracy_with_rejection, security_evaluation
from skadv.plotting import AttackTraceDisplay, SecurityEvaluationDisplay

N_FIT, CNN_EPOCHS, CV, N_EVAL, ATTACK_ITER = 500, 8, 3, 60, 15

X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=0)
X_fit, X_val, y_fit, _ = train_test_split(X_train, y_train, test_size=0.2, stratify=y_train, random_state=0)
X_fit, y_fit = X_fit[:N_FIT], y_fit[:N_FIT]
net = make_digits_classifier(X_fit, y_fit, epochs=CNN_EPOCHS, random_state=0)
cnn = net.module_.eval()


def predict(X):
    return net.predict(np.asarray(X, dtype=np.float32).reshape(-1, 1, 8, 8))


dnr = DeepNeuralRejection(cnn, layers=["features.1", "features.4", "classifier.2"], input_shape=(1, 8, 8),
                          cv=CV, random_state=0).fit(X_fit, y_fit)

# %%
# The reject threshold
# --------------------
# As in secml, the threshold rejects 10 % of clean validation digits
# (``compute_threshold(X_val, 0.1)``). A rejected clean digit counts as an error in the
# accuracy with rejection.
dnr.set_params(threshold=dnr.compute_threshold(X_val, 0.1))
print(f"DNR fitted on {len(X_fit)} digits; "
      f"threshold {dnr.threshold:.4f} rejects 10 % of {len(X_val)} clean validation digits")

pred = dnr.predict(X_test)
rejected = pred == -1
print(f"clean test digits ({len(X_test)}): CNN accuracy {np.mean(predict(X_test) == y_test):.3f}; "
      f"DNR rejects {rejected.mean():.3f}, accuracy with rejection {accuracy_with_rejection(y_test, pred):.3f}, "
      f"accuracy on accepted digits {np.mean(pred[~rejected] == y_test[~rejected]):.3f}")

# %%
# Security evaluation
# -------------------
# DNR under the adaptive attack against the CNN alone under the same attack, at growing L2
# budgets. DNR classifies the digits it accepts itself, so its accuracy uses its own labels.
X_eval, y_eval = X_test[:N_EVAL], y_test[:N_EVAL]
eps_values = [0.0, 0.5, 1.0, 2.0]
attack = {"step_size": 0.1, "max_iter": ATTACK_ITER}
rejection_rate, dnr_accuracy, evaded, adversarial = [], [], [], {}
for eps in eps_values:
    X_adv = PGDLineSearch(dnr, eps=eps, **attack).generate(X_eval, y_eval) if eps > 0 else X_eval
    pred = adversarial[eps] = dnr.predict(X_adv)
    rejection_rate.append(np.mean(pred == -1))
    dnr_accuracy.append(accuracy_with_rejection(y_eval, pred, attacked=eps > 0))
    evaded.append(np.mean((pred != -1) & (pred != y_eval)))
# The CNN takes images (n, 1, 8, 8): security_evaluation reads its labels with rows as given.
cnn_eval = security_evaluation(cnn, PGDLineSearch, X_eval.reshape(-1, 1, 8, 8), y_eval, eps_values, **attack)
print(f"PGD with line search (L2) on {N_EVAL} test digits; DNR attacked adaptively")
print(f"{'eps':>5s} {'CNN acc':>8s} {'DNR rejected':>12s} {'DNR acc':>7s} {'evaded':>7s}")
for i, eps in enumerate(eps_values):
    print(f"{eps:5.2f} {cnn_eval.accuracy[i]:8.3f} {rejection_rate[i]:12.3f} {dnr_accuracy[i]:7.3f} {evaded[i]:7.3f}")
print("CNN acc: accuracy of the CNN alone under the attack; DNR acc: accuracy with rejection (clean: a "
      "rejection is an error;\nattacked: a rejection defends); evaded: attacked digits DNR accepts and "
      "misclassifies")

fig, ax = plt.subplots(figsize=(6.2, 4.2))
SecurityEvaluationDisplay(eps_values=eps_values, accuracy=cnn_eval.accuracy, detection_rate=rejection_rate,
                          accuracy_with_rejection=dnr_accuracy).plot(ax=ax)
for line, label in zip(ax.get_lines(),
                       ["CNN alone: accuracy", "DNR: accuracy with rejection", "DNR: rejection rate"]):
    line.set_label(label)
ax.legend(loc="best", fontsize=8)
ax.set_xlabel("L2 attack budget eps\n(at eps=0 a rejected digit is an error; under attack it is defended)")
ax.set_title("Adaptive PGD with line search against DNR")
fig.tight_layout()

# %%
# Trace of the attack on one digit
# --------------------------------
# A digit that DNR accepts and classifies right, and that the attack at the largest budget
# gets through (accepted, wrong). DNR's adaptive logits are raw SVM scores (the threshold
# last), so the middle panel plots the scores themselves.
eps_trace = eps_values[-1]
evading = np.flatnonzero((adversarial[0.0] == y_eval) & (adversarial[eps_trace] != -1)
                         & (adversarial[eps_trace] != y_eval))
index = int(evading[0]) if evading.size else 0
disp = AttackTraceDisplay.from_attack(PGDLineSearch(dnr, eps=eps_trace, **attack), X_eval, y_eval,
                                      sample_index=index, image_shape=(8, 8))
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
true, other = trace.true_score[:, 0], trace.max_other_score[:, 0]
print(f"trace of test digit {index}: objective {trace.loss[0, 0]:+.3f} -> {trace.loss[-1, 0]:+.3f} in "
      f"{trace.n_iter - 1} iterations; true-class score {true[0]:+.3f} -> {true[-1]:+.3f}, best other "
      f"{other[0]:+.3f} -> {other[-1]:+.3f} (threshold {dnr.threshold:+.3f})")
plt.show()
