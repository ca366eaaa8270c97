"""
Scale out on a dask cluster
===========================

skadv estimators pickle cleanly (module weights travel as numpy state), so joblib's dask backend
ships their fits to a cluster. On the digits:

1. start a local dask cluster (2 worker processes, loopback only, no dashboard) and a client;
2. run the grid search of :ref:`sphx_glr_auto_examples_workflows_sklearn_workflows.py` (a
   :class:`~skadv.ModelDistillationDetector` tuned with ``make_attack_scorer(PGD)`` on clean
   data) once locally and once under ``joblib.parallel_config(backend="dask")``: every fit and
   every attack is seeded, so the cluster finds the same scores;
3. score a dask array stored on disk block by block on the workers with
   ``X.map_blocks(det.score_samples, drop_axis=1, dtype=float)`` (dask-ml's ``ParallelPostFit``
   has no ``score_samples``) and compare with scoring in-process;
4. close client and cluster (context managers: they stop even on errors).

Replace ``LocalCluster`` by the address of a real scheduler to use a remote cluster. This example
needs dask.distributed: ``pip install ".[examples]"``.

**What you should see**: the same AUROC for every setting locally and on the cluster, the same
best setting, and a largest score difference of 0 between the workers' scores and in-process
ones. The timings depend on the machine; two workers pay off once fits take longer than
shipping the estimator and the data to them.
"""

# %%
# The grid search, run locally
# ----------------------------
# Small, seeded settings so that the documentation builds quickly.
import logging
import os
import tempfile
import time

import dask
import dask.array as da
import joblib
import numpy as np
from distributed import Client, LocalCluster
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skadv import ModelDistillationDetector
from skadv.attacks import PGD
from skadv.datasets import load_digits8, make_digits_classifier
from skadv.metrics import make_attack_scorer

CNN_EPOCHS, DETECTOR_EPOCHS, N_SEARCH, N_ROWS = 5, 4, 400, 20_000


def make_search(cnn, n_jobs=None):
    """A detector tuned under adaptive PGD on clean data (as in the scikit-learn workflows example)."""
    detector = ModelDistillationDetector(cnn, input_shape=(1, 8, 8), epochs=DETECTOR_EPOCHS, random_state=0)
    scorer = make_attack_scorer(PGD, eps=0.1, step_size=0.03, max_iter=5, adaptive=True, random_state=0)
    cv = StratifiedKFold(n_splits=2, shuffle=True, random_state=0)
    return GridSearchCV(detector, {"loss_type": ["kld", "xent"]}, scoring=scorer, cv=cv, error_score="raise",
                        n_jobs=n_jobs)


X_train, X_test, y_train, _ = load_digits8(test_size=0.3, random_state=0)
net = make_digits_classifier(X_train, y_train, epochs=CNN_EPOCHS, random_state=0)
cnn = net.module_
X_search, y_search = X_train[:N_SEARCH], y_train[:N_SEARCH]

t0 = time.perf_counter()
local = make_search(cnn).fit(X_search, y_search)
local_s = time.perf_counter() - t0
n_fits = len(local.cv_results_["params"]) * local.n_splits_

# %%
# A large array on disk
# ---------------------
# One ``.npy`` file per block of rows (``da.to_npy_stack``), so that the workers read their
# blocks themselves instead of receiving the data through the task graph. A remote cluster needs
# the directory on shared storage (or a format such as zarr on S3).
rng = np.random.RandomState(0)
X_large = np.clip(X_test[rng.randint(len(X_test), size=N_ROWS)]
                  + rng.normal(0, 0.05, size=(N_ROWS, X_test.shape[1])), 0, 1).astype(np.float32)
storage = tempfile.TemporaryDirectory()
stack_dir = os.path.join(storage.name, "noisy_digits_npy_stack")
da.to_npy_stack(stack_dir, da.from_array(X_large, chunks=(5_000, X_large.shape[1])), axis=0)

# %%
# The same search and the scoring on the cluster
# ----------------------------------------------
# dask's nannies start workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which makes glibc hand
# memory back to the OS so eagerly that torch's CPU inference runs about 1.7 times slower on
# digits; ``None`` leaves glibc's default for the workers. The scheduler and the workers listen
# on 127.0.0.1 only.
cluster_kwargs = dict(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None)
worker_env = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
t0 = time.perf_counter()
with dask.config.set(worker_env), LocalCluster(**cluster_kwargs) as cluster, Client(cluster) as client:
    # Import skadv (and torch) on every worker once, so the timings below exclude it.
    client.run(__import__, "skadv")
    print(f"dask cluster: {len(client.scheduler_info()['workers'])} worker processes x 1 thread "
          f"(started in {time.perf_counter() - t0:.1f} s)")

    t0 = time.perf_counter()
    with joblib.parallel_config(backend="dask"):
        remote = make_search(cnn, n_jobs=-1).fit(X_search, y_search)
    remote_s = time.perf_counter() - t0

    print(f"GridSearchCV, {n_fits} fits + scoring under adaptive PGD eps=0.1 "
          f"(local {local_s:.1f} s, dask {remote_s:.1f} s)")
    print(f"{'parameters':44s} {'AUROC local':>11s} {'AUROC dask':>10s}")
    for params, a, b in zip(local.cv_results_["params"], local.cv_results_["mean_test_score"],
                            remote.cv_results_["mean_test_score"]):
        print(f"{params!s:44s} {a:11.3f} {b:10.3f}")
    difference = np.max(np.abs(local.cv_results_["mean_test_score"] - remote.cv_results_["mean_test_score"]))
    print(f"best local {local.best_params_}, best dask {remote.best_params_}; "
          f"largest score difference {difference:.2g}")
    assert local.best_params_ == remote.best_params_

    # Batch scoring of a dask array: each worker reads its blocks from disk and scores them.
    detector = remote.best_estimator_
    X_dask = da.from_npy_stack(stack_dir)
    scores_dask = X_dask.map_blocks(detector.score_samples, drop_axis=1, dtype=float)
    t0 = time.perf_counter()
    scores = scores_dask.compute()
    dask_s = time.perf_counter() - t0
    scores_local = detector.score_samples(X_large)
    print(f"dask array {X_dask.shape} in {X_dask.numblocks[0]} blocks scored on the workers in {dask_s:.1f} s; "
          f"{np.mean(scores < detector.offset_):.3f} flagged; largest difference to in-process scores "
          f"{np.max(np.abs(scores - scores_local)):.2g}")
    # On a busy machine a worker may take more than the nanny's 4 s to exit, and the nanny then
    # kills it with a warning; nothing is lost, so keep shutdown quiet.
    logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
storage.cleanup()
print("cluster closed")
