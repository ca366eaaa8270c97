"""Scale-out through joblib's dask backend and dask arrays, on a LocalCluster (loopback only)."""

import joblib
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skadv import ModelDistillationDetector
from skadv.attacks import FGSM
from skadv.metrics import make_attack_scorer

from _models import seeded_mlp

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster, distributed.Client(cluster) as dask_client:
        yield dask_client


def _search(teacher):
    return GridSearchCV(
        ModelDistillationDetector(teacher, epochs=3, random_state=0),
        {"temperature": [0.5, 2.0], "loss_type": ["kld", "xent"]},
        scoring=make_attack_scorer(FGSM, eps=0.1, adaptive=False),
        cv=StratifiedKFold(n_splits=2, shuffle=True, random_state=0),
        n_jobs=2,
    )


def test_grid_search_on_dask_cluster_matches_local(client, digits):
    X, y = digits[0][:400], digits[1][:400]
    teacher = seeded_mlp()
    local = _search(teacher).fit(X, y)
    with distributed.get_task_stream(client) as task_stream, joblib.parallel_config(backend="dask"):
        remote = _search(teacher).fit(X, y)
    assert len(task_stream.data) >= 8  # 4 candidates x 2 folds ran on the cluster's workers
    assert remote.best_params_ == local.best_params_
    np.testing.assert_allclose(remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"],
                               rtol=1e-5)
    np.testing.assert_allclose(remote.best_estimator_.score_samples(X), local.best_estimator_.score_samples(X),
                               rtol=1e-5)


def test_scoring_a_dask_array_with_map_blocks(client, digits):
    X_train, _, X_test, _ = digits
    det = ModelDistillationDetector(seeded_mlp(), epochs=2, random_state=0).fit(X_train)
    X_dask = da.from_array(X_test, chunks=(100, X_test.shape[1]))
    scores = X_dask.map_blocks(det.score_samples, drop_axis=1, dtype=float).compute()
    np.testing.assert_allclose(scores, det.score_samples(X_test), rtol=1e-6, atol=1e-9)


def test_dnr_layers_and_folds_fit_on_dask_cluster(client, digits):
    from skadv import DeepNeuralRejection

    X, y = digits[0][:300], digits[1][:300]

    def dnr(n_jobs):
        return DeepNeuralRejection(seeded_mlp(), layers=["1", "2"], cv=3, n_jobs=n_jobs, random_state=0)

    local = dnr(1).fit(X, y)
    with distributed.get_task_stream(client) as task_stream, joblib.parallel_config(backend="dask"):
        remote = dnr(2).fit(X, y)
    assert len(task_stream.data) >= 6  # 2 layers x 3 folds (plus the refits)
    np.testing.assert_allclose(remote.decision_function(X), local.decision_function(X), rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(remote.predict(X), local.predict(X))
