"""Reliability sweep across every estimator: bad input, unfitted use, no mutation."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from _models import digits_mlp
from skadv import AdversarialAEDetector, DeepNeuralRejection, DNRDetector, ModelDistillationDetector, VAEDetector

N_FEATURES = 16
RNG = np.random.RandomState(0)
X_FIT = RNG.rand(60, N_FEATURES).astype(np.float32)
Y_FIT = RNG.randint(0, 3, size=60)


def _teacher():
    return digits_mlp(N_FEATURES, 3, 8)


# name -> (unfitted estimator factory, needs y in fit)
ESTIMATORS = {
    "AdversarialAEDetector": (lambda: AdversarialAEDetector(_teacher(), epochs=1, random_state=0), False),
    "ModelDistillationDetector": (lambda: ModelDistillationDetector(_teacher(), epochs=1, random_state=0), False),
    "VAEDetector": (lambda: VAEDetector(_teacher(), epochs=1, n_samples=3, random_state=0), False),
    "DeepNeuralRejection": (lambda: DeepNeuralRejection(_teacher(), layers=["1", "2"], cv=2, random_state=0), True),
    "DNRDetector": (
        lambda: DNRDetector(DeepNeuralRejection(_teacher(), layers=["1", "2"], cv=2, random_state=0)), True
    ),
}

PREDICT_METHODS = (
    "predict", "predict_proba", "score_samples", "decision_function", "adversarial_score", "detect", "correct",
    "distinct_labels", "reconstruct",
)


@pytest.fixture(scope="module")
def fitted():
    out = {}
    for name, (factory, needs_y) in ESTIMATORS.items():
        est = factory()
        out[name] = est.fit(X_FIT, Y_FIT) if needs_y else est.fit(X_FIT)
    return out


def _methods(est):
    return [m for m in PREDICT_METHODS if hasattr(est, m)]


def _bad_input(kind, n_rows, position, draw_value):
    X = np.random.RandomState(n_rows).rand(n_rows, N_FEATURES)
    if kind == "nan":
        X[position % n_rows, position % N_FEATURES] = np.nan
    elif kind == "inf":
        X[position % n_rows, position % N_FEATURES] = draw_value
    elif kind == "wrong_width":
        X = np.random.rand(n_rows, N_FEATURES + (position % 5) + 1) if position % 2 else X[:, : 1 + position % 15]
    elif kind == "one_d":
        X = X[0]
    elif kind == "empty":
        X = X[:0]
    elif kind == "strings":
        X = X.astype(str)
        X[0, 0] = "not a number"
    elif kind == "ragged":
        X = [list(row) for row in X]
        X[-1] = X[-1][:-1]
    elif kind == "complex":
        X = X + 1j
    return X


BAD_KINDS = ("nan", "inf", "wrong_width", "one_d", "empty", "strings", "ragged", "complex")


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(BAD_KINDS),
    n_rows=st.integers(1, 9),
    position=st.integers(0, 200),
    inf_value=st.sampled_from([np.inf, -np.inf]),
)
def test_bad_input_is_a_clear_value_error(fitted, name, kind, n_rows, position, inf_value):
    est = fitted[name]
    X = _bad_input(kind, n_rows, position, inf_value)
    for method in _methods(est):
        with pytest.raises(ValueError) as info:
            getattr(est, method)(X)
        assert len(str(info.value)) > 10, (method, kind, str(info.value))


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_at_fit_is_a_value_error(name, kind):
    factory, needs_y = ESTIMATORS[name]
    X = _bad_input(kind, 6, 3, np.inf)
    with pytest.raises(ValueError):
        factory().fit(X, Y_FIT[:6]) if needs_y else factory().fit(X)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_unfitted_raises_not_fitted(name):
    est = ESTIMATORS[name][0]()
    for method in _methods(est):
        with pytest.raises(NotFittedError):
            getattr(est, method)(X_FIT)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_user_arrays_and_model_are_never_modified(name):
    factory, needs_y = ESTIMATORS[name]
    est = factory()
    model = est.estimator.model if isinstance(est, DNRDetector) else est.model
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.requires_grad for p in model.parameters()]
    X, y = X_FIT.copy(), Y_FIT.copy()
    est.fit(X, y) if needs_y else est.fit(X)
    X_test = np.random.RandomState(1).rand(7, N_FEATURES).astype(np.float32)
    X_test_before = X_test.copy()
    for method in _methods(est):
        getattr(est, method)(X_test)
    np.testing.assert_array_equal(X, X_FIT)
    np.testing.assert_array_equal(y, Y_FIT)
    np.testing.assert_array_equal(X_test, X_test_before)
    assert model.training and [p.requires_grad for p in model.parameters()] == grads
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # the estimator's own parameters are untouched too (sklearn's clone contract)
    assert clone(est).get_params().keys() == est.get_params().keys()
