"""scikit-learn workflows with a detector: Pipeline, GridSearchCV under attack, deployment.

On load_digits, with a ModelDistillationDetector protecting a small CNN:

1. put the detector at the end of a ``Pipeline`` (after a step clipping inputs to the valid
   pixel range) and use the pipeline's ``predict`` / ``decision_function`` / ``score_samples``;
2. tune the detector with ``GridSearchCV`` on *clean* data alone: ``make_attack_scorer``
   attacks each validation fold with PGD (adaptive: classifier and detector together) and
   scores detection AUROC; non-classifiers get an unshuffled KFold by default, so pass a
   shuffled ``StratifiedKFold`` (``y`` holds class labels, used by the attack, never by ``fit``);
3. deploy: persist the pipeline with ``joblib`` (pickle: only load files you trust) and with
   ``skops.io`` (inspect ``get_untrusted_types`` and load trusting only those types), and
   check that the reloaded pipelines give bit-identical scores;
4. score a large array in chunks of rows with numpy, so memory stays bounded; scores are
   batch-invariant, so chunking changes no number.

    python examples/sklearn_workflows.py [--quick] [--out DIR]
"""

import argparse
import os
import time

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


def grid_search(cnn, X, y, quick):
    """The GridSearchCV of this example (also run on a dask cluster by dask_scale_out.py)."""
    detector = ModelDistillationDetector(cnn, input_shape=(1, 8, 8), epochs=4 if quick else 20, random_state=0)
    grid = {"loss_type": ["kld", "xent"]} if quick else {"loss_type": ["kld", "xent"], "temperature": [0.5, 1.0, 2.0]}
    scorer = make_attack_scorer(PGD, eps=0.1, step_size=0.03 if quick else 0.01, max_iter=5 if quick else 20,
                                adaptive=True, random_state=0)
    cv = StratifiedKFold(n_splits=2 if quick else 3, shuffle=True, random_state=0)
    return GridSearchCV(detector, grid, scoring=scorer, cv=cv, error_score="raise").fit(X, y)


def print_search(search):
    print(f"{'parameters':44s} {'AUROC (mean ± std over folds)':>30s}")
    results = search.cv_results_
    for params, mean, std in zip(results["params"], results["mean_test_score"], results["std_test_score"]):
        print(f"{params!s:44s} {mean:22.3f} ± {std:.3f}")
    print(f"best: {search.best_params_} (AUROC {search.best_score_:.3f})")


def main(quick=False, out="examples_out"):
    start = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=0)
    net = make_digits_classifier(X_train, y_train, epochs=5 if quick else 20, random_state=0)
    cnn = net.module_

    # 1. Pipeline: sanitise, then detect. The detector learns from clean rows; y is ignored.
    print("== Pipeline")
    pipe = make_pipeline(
        FunctionTransformer(np.clip, kw_args={"a_min": 0.0, "a_max": 1.0}),
        ModelDistillationDetector(cnn, input_shape=(1, 8, 8), epochs=5 if quick else 30, random_state=0),
    ).fit(X_train)
    detector = pipe[-1]
    X_adv = PGD(detector, eps=0.1, adaptive=False, random_state=0).generate(X_test, y_test)
    print(f"steps: {' -> '.join(pipe.named_steps)}\n"
          f"flagged (predict == -1): {np.mean(pipe.predict(X_test) == -1):.3f} of clean test digits, "
          f"{np.mean(pipe.predict(X_adv) == -1):.3f} of PGD eps=0.1 (non-adaptive); "
          f"AUROC {detection_auroc(-pipe.score_samples(X_test), -pipe.score_samples(X_adv)):.3f}")
    assert np.allclose(pipe.decision_function(X_test), pipe.score_samples(X_test) - detector.offset_)

    # 2. Model selection on clean data, the attack inside the scorer.
    print("\n== GridSearchCV with make_attack_scorer(PGD, eps=0.1), shuffled StratifiedKFold")
    X_search, y_search = (X_train[:600], y_train[:600]) if quick else (X_train, y_train)
    t0 = time.perf_counter()
    search = grid_search(cnn, X_search, y_search, quick)
    print_search(search)
    best = search.best_estimator_
    X_adv_best = PGD(best, eps=0.1, random_state=0).generate(X_test, y_test)
    print(f"refitted best detector on the held-out test digits, adaptive PGD eps=0.1: AUROC "
          f"{detection_auroc(best.adversarial_score(X_test), best.adversarial_score(X_adv_best)):.3f} "
          f"(search {time.perf_counter() - t0:.0f} s)")

    # 3. Deployment. Pickle (joblib) runs code on load: only for files you trust.
    print("\n== Persistence")
    reference = pipe.score_samples(X_test)
    joblib_path = os.path.join(out, "mdd_pipeline.joblib")
    joblib.dump(pipe, joblib_path)
    from_joblib = joblib.load(joblib_path)
    assert np.array_equal(from_joblib.score_samples(X_test), reference)
    print(f"joblib: {joblib_path} ({os.path.getsize(joblib_path) / 1e3:.0f} kB) reloaded, identical scores")
    # skops never runs code it was not told to trust: list the types, check them, trust those only.
    skops_path = os.path.join(out, "mdd_pipeline.skops")
    sio.dump(pipe, skops_path)
    untrusted = sio.get_untrusted_types(file=skops_path)
    print(f"skops: untrusted types in {skops_path}: {untrusted}")
    assert set(untrusted) <= {"numpy.clip", "skadv.detectors._distillation.ModelDistillationDetector"}, untrusted
    from_skops = sio.load(skops_path, trusted=untrusted)
    assert np.array_equal(from_skops.score_samples(X_test), reference)
    print("skops: reloaded trusting only those, identical scores")

    # 4. Batch scoring of a large array in chunks (e.g. rows arriving from storage).
    print("\n== Chunked batch scoring")
    rng = np.random.RandomState(0)
    n_rows = 20_000 if quick else 200_000
    X_large = np.clip(X_test[rng.randint(len(X_test), size=n_rows)]
                      + rng.normal(0, 0.05, size=(n_rows, X_test.shape[1])), 0, 1).astype(np.float32)
    chunk_rows = 4096
    t0 = time.perf_counter()
    scores = np.concatenate([from_joblib.score_samples(chunk)
                             for chunk in np.array_split(X_large, -(-n_rows // chunk_rows))])
    seconds = time.perf_counter() - t0
    assert np.array_equal(scores[:1000], from_joblib.score_samples(X_large[:1000]))
    print(f"{n_rows} noisy digits in chunks of {chunk_rows} rows: {n_rows / seconds:,.0f} rows/s, "
          f"{np.mean(scores < from_joblib[-1].offset_):.3f} flagged; chunked scores equal unchunked ones")
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="examples_out")
    main(**vars(parser.parse_args()))
