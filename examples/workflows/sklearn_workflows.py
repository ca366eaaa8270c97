"""
scikit-learn workflows: Pipeline, GridSearchCV under attack, deployment
=======================================================================

A :class:`~skadv.ModelDistillationDetector` protecting a small CNN, used the way any
scikit-learn estimator is used:

1. at the end of a :class:`~sklearn.pipeline.Pipeline` (after a step clipping inputs to the
   valid pixel range), with the pipeline's ``predict`` / ``decision_function`` /
   ``score_samples``;
2. tuned with :class:`~sklearn.model_selection.GridSearchCV` on *clean* data alone:
   :func:`~skadv.metrics.make_attack_scorer` attacks each validation fold with PGD (adaptive:
   classifier and detector together) and scores the detection AUROC;
3. persisted with ``joblib`` (pickle: only load files you trust) and with ``skops.io`` (inspect
   ``get_untrusted_types`` and load trusting only those types);
4. scoring a large array in chunks of rows, so memory stays bounded.

This example needs skops: ``pip install ".[examples]"``.

**What you should see**: the pipeline flags a few percent of clean digits and most PGD digits;
the grid search prints a mean AUROC per setting; both reloaded pipelines give identical scores;
chunked scores equal unchunked ones.
"""

# %%
# A detector in a Pipeline
# ------------------------
# The detector learns from clean rows; ``fit`` ignores ``y``. Small, seeded settings so that
# the documentation builds quickly (raise the epochs and the grid for real model selection).
import os
import tempfile

import joblib
import numpy as np
import skops.io as sio
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skadv import ModelDistillationDetector
from skadv.attacks import PGD
from skadv.datasets import load_digits8, make_digits_classifier
from skadv.metrics import detection_auroc, make_attack_scorer

CNN_EPOCHS, DETECTOR_EPOCHS, N_SEARCH, N_ROWS = 5, 5, 600, 20_000

X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=0)
net = make_digits_classifier(X_train, y_train, epochs=CNN_EPOCHS, random_state=0)
cnn = net.module_

pipe = make_pipeline(
    FunctionTransformer(np.clip, kw_args={"a_min": 0.0, "a_max": 1.0}),
    ModelDistillationDetector(cnn, input_shape=(1, 8, 8), epochs=DETECTOR_EPOCHS, random_state=0),
).fit(X_train)
detector = pipe[-1]
X_adv = PGD(detector, eps=0.1, adaptive=False, random_state=0).generate(X_test, y_test)
print(f"steps: {' -> '.join(pipe.named_steps)}\n"
      f"flagged (predict == -1): {np.mean(pipe.predict(X_test) == -1):.3f} of clean test digits, "
      f"{np.mean(pipe.predict(X_adv) == -1):.3f} of PGD eps=0.1 (non-adaptive); "
      f"AUROC {detection_auroc(-pipe.score_samples(X_test), -pipe.score_samples(X_adv)):.3f}")
assert np.allclose(pipe.decision_function(X_test), pipe.score_samples(X_test) - detector.offset_)

# %%
# Model selection on clean data, the attack inside the scorer
# -----------------------------------------------------------
# Non-classifiers get an unshuffled ``KFold`` by default: pass a shuffled
# ``StratifiedKFold`` (``y`` holds class labels, used by the attack, never by ``fit``).
search = GridSearchCV(
    ModelDistillationDetector(cnn, input_shape=(1, 8, 8), epochs=4, random_state=0),
    {"loss_type": ["kld", "xent"]},
    scoring=make_attack_scorer(PGD, eps=0.1, step_size=0.03, max_iter=5, adaptive=True, random_state=0),
    cv=StratifiedKFold(n_splits=2, shuffle=True, random_state=0),
    error_score="raise",
).fit(X_train[:N_SEARCH], y_train[:N_SEARCH])

print(f"{'parameters':44s} {'AUROC (mean ± std over folds)':>30s}")
results = search.cv_results_
for params, mean, std in zip(results["params"], results["mean_test_score"], results["std_test_score"]):
    print(f"{params!s:44s} {mean:22.3f} ± {std:.3f}")
print(f"best: {search.best_params_} (AUROC {search.best_score_:.3f})")

# %%
# The refitted best detector carries the in-sample threshold of its ``contamination``: call
# ``infer_threshold`` on held-out clean rows before deploying it. Here it is evaluated on the
# held-out test digits under adaptive PGD.
best = search.best_estimator_
X_adv_best = PGD(best, eps=0.1, random_state=0).generate(X_test, y_test)
print(f"refitted best detector on the held-out test digits, adaptive PGD eps=0.1: AUROC "
      f"{detection_auroc(best.adversarial_score(X_test), best.adversarial_score(X_adv_best)):.3f}")

# %%
# Deployment
# ----------
# Pickle (``joblib``) runs code on load: only for files you trust. ``skops`` never runs code
# it was not told to trust: list the types, check them, trust those only.
reference = pipe.score_samples(X_test)
with tempfile.TemporaryDirectory() as folder:
    joblib_path = os.path.join(folder, "mdd_pipeline.joblib")
    joblib.dump(pipe, joblib_path)
    from_joblib = joblib.load(joblib_path)
    assert np.array_equal(from_joblib.score_samples(X_test), reference)
    print(f"joblib: mdd_pipeline.joblib ({os.path.getsize(joblib_path) / 1e3:.0f} kB) reloaded, identical scores")

    skops_path = os.path.join(folder, "mdd_pipeline.skops")
    sio.dump(pipe, skops_path)
    untrusted = sio.get_untrusted_types(file=skops_path)
    print(f"skops: untrusted types in mdd_pipeline.skops: {untrusted}")
    detector_type = f"{ModelDistillationDetector.__module__}.{ModelDistillationDetector.__qualname__}"
    assert set(untrusted) <= {"numpy.clip", detector_type}, untrusted
    from_skops = sio.load(skops_path, trusted=untrusted)
    assert np.array_equal(from_skops.score_samples(X_test), reference)
    print("skops: reloaded trusting only those, identical scores")

# %%
# Batch scoring in chunks
# -----------------------
# Rows arriving from storage are scored chunk by chunk. Scores do not depend on the batch, so
# chunking changes no number.
rng = np.random.RandomState(0)
X_large = np.clip(X_test[rng.randint(len(X_test), size=N_ROWS)]
                  + rng.normal(0, 0.05, size=(N_ROWS, X_test.shape[1])), 0, 1).astype(np.float32)
chunk_rows = 4096
scores = np.concatenate([from_joblib.score_samples(chunk)
                         for chunk in np.array_split(X_large, -(-N_ROWS // chunk_rows))])
assert np.array_equal(scores[:1000], from_joblib.score_samples(X_large[:1000]))
print(f"{N_ROWS} noisy digits in chunks of {chunk_rows} rows: {np.mean(scores < from_joblib[-1].offset_):.3f} "
      f"flagged; chunked scores equal unchunked ones")
