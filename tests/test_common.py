"""The contract every public estimator keeps, run on each configuration in ``_instances.INSTANCES``.

scikit-learn's common checks, and skadv's (:mod:`skadv.utils.estimator_checks`, public so
that third-party detectors run them too): bad input is a clear ValueError and unfitted use
a NotFittedError; pickle/joblib/skops round trips give bit-identical outputs; the user's
arrays and model are never modified; concurrent scoring equals serial scoring; a fit that
fails or is interrupted leaves the estimator as it was; the attack surface is
differentiable. Below them, what only skadv's own estimators promise.
"""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks as parametrize_with_sklearn_checks
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import EarlyStopping
from torch import nn

from skadv.utils.discovery import all_estimators
from skadv.utils.estimator_checks import _BAD_KINDS, _assert_bad_input_raises, parametrize_with_checks

from _instances import (
    BY_ID,
    CONTRACT_TYPES,
    IDS,
    INSTANCES,
    OUTSIDE_CONTRACT,
    PARAMS,
    expected_failed_checks,
    fit_instance,
    needs_y,
    protected_model,
)
from _models import Wave

N_FEATURES = 16
RNG = np.random.RandomState(0)
X_FIT = RNG.rand(60, N_FEATURES).astype(np.float32)
Y_FIT = RNG.randint(0, 3, size=60)


def fit(estimator, X=X_FIT, y=Y_FIT):
    return fit_instance(estimator, X, y)


def fresh(name):
    """An unfitted copy of the instance (its model deep-copied, so tests never share one)."""
    return clone(BY_ID[name])


def with_model(estimator, model):
    """``estimator`` protecting ``model`` instead (through a detector view too)."""
    key = "estimator__model" if "estimator" in estimator.get_params(deep=False) else "model"
    return estimator.set_params(**{key: model})


@pytest.fixture(scope="module")
def fitted():
    return {name: fit(fresh(name)) for name in IDS}


# ----------------------------------------------------------------------------- the table


def test_every_public_estimator_has_an_entry():
    """A new public estimator needs construction parameters in ``_instances.PARAMS`` (or a reason to be outside)."""
    contract = {name for name, _ in all_estimators(type_filter=CONTRACT_TYPES)}
    attacks = {name for name, _ in all_estimators(type_filter="attack")}
    missing = sorted(contract - {name for name, configurations in PARAMS.items() if configurations})
    assert missing == [], f"public estimators without an entry in tests/_instances.py PARAMS: {missing}"
    assert set(PARAMS) <= contract, sorted(set(PARAMS) - contract)
    others = {name for name, _ in all_estimators()} - contract - attacks
    assert others == set(OUTSIDE_CONTRACT), "list these in OUTSIDE_CONTRACT, with the reason, or in PARAMS"
    assert len(INSTANCES) == sum(len(configurations) for configurations in PARAMS.values())


# ----------------------------------------------------------------------------- scikit-learn's checks


@parametrize_with_sklearn_checks(INSTANCES, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        # The checks fit on few, often constant rows: the detectors warn about them.
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)


# ----------------------------------------------------------------------------- skadv's checks


@parametrize_with_checks(INSTANCES)
def test_skadv_contract(estimator, check):
    check(estimator)


# ----------------------------------------------------------------------------- bad input, widely drawn


@pytest.mark.parametrize("name", IDS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(_BAD_KINDS),
    n_rows=st.integers(1, 9),
    position=st.integers(0, 200),
    inf_value=st.sampled_from([np.inf, -np.inf]),
)
def test_bad_input_is_a_clear_value_error(fitted, name, kind, n_rows, position, inf_value):
    _assert_bad_input_raises(fitted[name], kind, n_rows, position, inf_value)


# ----------------------------------------------------------------------------- the user's objects


class NormalisesInPlace(nn.Module):
    """A classifier that centres its input in place (as some preprocessing layers do).

    Its ``body`` is laid out as the instances' WavyMLP, so their layer names (``body.1`` ...) hold,
    and it predicts several classes untrained (DNRDetector fits on its predictions).
    """

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(N_FEATURES, 8), Wave(), nn.Linear(8, 3))

    def forward(self, x):
        x.sub_(0.5)
        return self.body(x)


@pytest.mark.parametrize("name", [name for name in IDS if protected_model(BY_ID[name]) is not None])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_model_writing_into_its_input_never_changes_the_users_x(name, dtype):
    torch.manual_seed(0)
    est = with_model(fresh(name), NormalisesInPlace())
    X_train = X_FIT[:48].astype(dtype)  # a multiple of 8 rows: no padding copy
    X_train_before = X_train.copy()
    fit(est, X_train)
    np.testing.assert_array_equal(X_train, X_train_before)
    score = "decision_function" if needs_y(est) else "score_samples"
    for n_rows in (8, 7):
        X = np.ascontiguousarray(X_FIT[:n_rows], dtype=dtype)
        X_before = X.copy()
        first = getattr(est, score)(X)
        np.testing.assert_array_equal(X, X_before)
        # and the scores do not drift with repeated calls on the same array
        np.testing.assert_array_equal(getattr(est, score)(X), first)


# ----------------------------------------------------------------------------- training


def _trains_a_net(name):
    """Detectors trained through skorch: they take ``epochs`` and ``callbacks`` (and keep a ``history_``)."""
    return {"epochs", "callbacks"} <= BY_ID[name].get_params(deep=False).keys()


TRAINED = [name for name in IDS if _trains_a_net(name)]


@pytest.mark.parametrize("name", TRAINED)
def test_early_stopping_callback_is_not_an_interruption(name):
    # threshold=0.99 (relative): no epoch improves on the first by 99 %, so training stops after epoch 2.
    stopper = EarlyStopping(monitor="train_loss", patience=1, threshold=0.99)
    est = fit(fresh(name).set_params(epochs=6, callbacks=[stopper]))
    check_is_fitted(est)
    assert len(est.history_) == 2
    assert np.isfinite(est.score_samples(X_FIT[:20])).all()


@pytest.mark.parametrize("name", TRAINED)
def test_single_distinct_row_fits_with_a_warning(name):
    est = fresh(name)
    with pytest.warns(UserWarning, match="fitted on a single row: it cannot learn how clean data varies"):
        est.fit(X_FIT[:1])
    with pytest.warns(UserWarning, match="fitted on 5 copies of a single row"):
        est.fit(np.repeat(X_FIT[:1], 5, axis=0))
    check_is_fitted(est)
