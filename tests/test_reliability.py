"""Reliability sweep across every estimator: bad input, unfitted use, no mutation."""

import pickle
import signal
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback, EarlyStopping
from torch import nn

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
    "AdversarialAEDetector": (
        lambda: AdversarialAEDetector(_teacher(), hidden_layer_kld={"1": 4, 2: 3}, epochs=1, random_state=0), False
    ),
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


# What each kind of bad input's error message must name.
BAD_MESSAGES = {
    "nan": "contains NaN",
    "inf": "contains infinity",
    "wrong_width": r"X has \d+ features, but \w+ is expecting 16 features",
    "one_d": "Expected 2D array, got 1D array",
    "empty": r"0 sample\(s\)",
    "strings": "could not convert string to float",
    # One short row among full ones: numpy sees ragged rows, or a single row is too short.
    "ragged": r"inhomogeneous shape|X has 15 features",
    "complex": "Complex data not supported",
}


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
        with pytest.raises(ValueError, match=BAD_MESSAGES[kind]):
            getattr(est, method)(X)


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
    params = est.get_params(deep=False)
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
    # the estimator's own parameters are the very objects it was given (sklearn's clone contract)
    after = est.get_params(deep=False)
    assert after.keys() == params.keys()
    for key, value in params.items():
        assert after[key] is value, key


# ----------------------------------------------------------------------------- serving threads

SCORING_METHODS = ("score_samples", "decision_function", "predict", "adversarial_score", "distinct_labels")


def _calls(est, n_calls, seed):
    """Mixed calls: (method, first row, row count) with 1 to 13 rows."""
    rng = np.random.RandomState(seed)
    methods = [m for m in SCORING_METHODS if hasattr(est, m)]
    return [(methods[rng.randint(len(methods))], rng.randint(0, 50), rng.randint(1, 14)) for _ in range(n_calls)]


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_concurrent_calls_equal_serial_calls(fitted, name):
    est = fitted[name]
    X = np.random.RandomState(2).rand(64, N_FEATURES).astype(np.float32)
    calls = _calls(est, 400, seed=3)

    def run(call):
        method, start, n_rows = call
        return getattr(est, method)(X[start : start + n_rows])

    serial = [run(call) for call in calls]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(run, calls))
    for call, expected, got in zip(calls, serial, concurrent):
        np.testing.assert_array_equal(got, expected, err_msg=str(call))


@pytest.mark.parametrize("name", ["DeepNeuralRejection", "AdversarialAEDetector"])
def test_concurrent_first_calls_after_loading_equal_serial(fitted, name):
    """Hooks are not persisted: a loaded estimator registers them on first use, from many threads at once."""
    X = np.random.RandomState(6).rand(64, N_FEATURES).astype(np.float32)
    calls = _calls(fitted[name], 80, seed=7)
    serial = [getattr(fitted[name], method)(X[start : start + n]) for method, start, n in calls]
    loaded = pickle.loads(pickle.dumps(fitted[name]))
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda call: getattr(loaded, call[0])(X[call[1] : call[1] + call[2]]), calls))
    for call, expected, got in zip(calls, serial, concurrent):
        np.testing.assert_array_equal(got, expected, err_msg=str(call))


def test_seeded_vae_scoring_leaves_the_global_rng_alone(fitted):
    state = torch.random.get_rng_state()
    fitted["VAEDetector"].score_samples(X_FIT)
    fitted["VAEDetector"].distinct_labels(X_FIT)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_concurrent_attack_surface_forward_equals_serial(fitted):
    """The differentiable paths read hidden layers too (DNR, AAE with heads): same guarantee."""
    x = torch.as_tensor(np.random.RandomState(4).rand(40, N_FEATURES).astype(np.float32))
    for name in ("DeepNeuralRejection", "AdversarialAEDetector"):
        est = fitted[name]
        slices = [(i % 30, 1 + i % 9) for i in range(200)]

        def run(bounds, est=est):
            with torch.no_grad():
                return est.attack_surface().forward(x[bounds[0] : bounds[0] + bounds[1]])

        serial = [run(b) for b in slices]
        with ThreadPoolExecutor(max_workers=8) as pool:
            concurrent = list(pool.map(run, slices))
        for expected, got in zip(serial, concurrent):
            assert torch.equal(expected, got)


# ----------------------------------------------------------------------------- fits that fail or stop

TRAINED = ("AdversarialAEDetector", "ModelDistillationDetector", "VAEDetector")


class InterruptAtBatch(Callback):
    """Raises KeyboardInterrupt at the end of training batch ``batch`` (counted from 1)."""

    def __init__(self, batch=1, ctrl_c=False):
        self.batch = batch
        self.ctrl_c = ctrl_c

    def initialize(self):
        self.seen_ = 0
        return self

    def on_batch_end(self, net, training=False, **kwargs):
        self.seen_ += 1
        if self.seen_ == self.batch:
            raise KeyboardInterrupt


class CtrlCAtEpochEnd(Callback):
    """Sends the process SIGINT at the end of epoch 1, as Ctrl-C would."""

    def on_epoch_end(self, net, **kwargs):
        signal.raise_signal(signal.SIGINT)


class FailAtEpoch(Callback):
    def __init__(self, epoch=2):
        self.epoch = epoch

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.epoch:
            raise RuntimeError("callback failure")


def _score(est):
    return est.score_samples(X_FIT[:20])


@pytest.mark.parametrize("name", TRAINED)
def test_interrupted_training_raises_and_leaves_no_fitted_detector(name):
    est = ESTIMATORS[name][0]().set_params(epochs=3, batch_size=16, callbacks=[InterruptAtBatch(1)])
    with pytest.raises(KeyboardInterrupt):
        est.fit(X_FIT)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)


@pytest.mark.parametrize("name", TRAINED)
def test_interrupted_refit_keeps_the_previous_detector(fitted, name):
    est = ESTIMATORS[name][0]().fit(X_FIT)
    before, attributes = _score(est), dict(vars(est))
    est.set_params(epochs=2, batch_size=16, callbacks=[InterruptAtBatch(3)])
    with pytest.raises(KeyboardInterrupt):
        est.fit(X_FIT[::-1])
    np.testing.assert_array_equal(_score(est), before)
    fitted_keys = [key for key in attributes if key.endswith("_")]
    assert all(vars(est)[key] is attributes[key] for key in fitted_keys)


def test_ctrl_c_at_epoch_end_is_an_interruption_not_a_stop():
    est = ESTIMATORS["ModelDistillationDetector"][0]().set_params(epochs=3, callbacks=[CtrlCAtEpochEnd()])
    with pytest.raises(KeyboardInterrupt):
        est.fit(X_FIT)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)


@pytest.mark.parametrize("name", TRAINED)
def test_early_stopping_callback_is_not_an_interruption(name):
    # threshold=0.99 (relative): no epoch improves on the first by 99 %, so training stops after epoch 2.
    stopper = EarlyStopping(monitor="train_loss", patience=1, threshold=0.99)
    est = ESTIMATORS[name][0]().set_params(epochs=6, callbacks=[stopper]).fit(X_FIT)
    check_is_fitted(est)
    assert len(est.history_) == 2
    assert np.isfinite(_score(est)).all()


class ExplodingClassifier:
    """A combiner whose fit fails (a bad setting only found mid-fit)."""

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self

    def fit(self, X, y):
        raise RuntimeError("combiner failure")

    def decision_function(self, X):
        raise AssertionError("never fitted")


def _break(name, est):
    """Parameters with which a refit fails midway (after the model copy is replaced)."""
    if name in TRAINED:
        return est.set_params(epochs=3, callbacks=[FailAtEpoch(2)]), RuntimeError
    dnr = est.estimator if name == "DNRDetector" else est
    dnr.set_params(combiner=ExplodingClassifier())
    return est, RuntimeError


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_failed_refit_keeps_previous_predictions_bit_identical(name):
    factory, needs_y = ESTIMATORS[name]
    est = factory()
    est.fit(X_FIT, Y_FIT) if needs_y else est.fit(X_FIT)
    X_test = np.random.RandomState(5).rand(30, N_FEATURES).astype(np.float32)
    before = {method: getattr(est, method)(X_test) for method in ("predict", "score_samples", "decision_function")}
    attributes = {key: value for key, value in vars(est).items() if key.endswith("_")}
    est, error = _break(name, est)
    X_other, y_other = X_FIT[::-1] * 0.5, Y_FIT[::-1]
    with pytest.raises(error, match="failure"):
        est.fit(X_other, y_other) if needs_y else est.fit(X_other)
    assert {key: value for key, value in vars(est).items() if key.endswith("_")} == attributes
    for method, expected in before.items():
        np.testing.assert_array_equal(getattr(est, method)(X_test), expected)


@pytest.mark.parametrize("name", ["DeepNeuralRejection", "DNRDetector"])
def test_failed_first_fit_leaves_dnr_unfitted(name):
    factory, _ = ESTIMATORS[name]
    est, error = _break(name, factory())
    with pytest.raises(error):
        est.fit(X_FIT, Y_FIT)
    with pytest.raises(NotFittedError):
        est.predict(X_FIT)


# ----------------------------------------------------------------------------- inputs the model writes into


class NormalisesInPlace(nn.Module):
    """A classifier that centres its input in place (as some preprocessing layers do)."""

    def __init__(self):
        super().__init__()
        self.body = digits_mlp(N_FEATURES, 3, 8)

    def forward(self, x):
        x.sub_(0.5)
        return self.body(x)


IN_PLACE = {
    "AdversarialAEDetector": (lambda m: AdversarialAEDetector(m, hidden_layer_kld={"body.1": 3}, epochs=1), False),
    "ModelDistillationDetector": (lambda m: ModelDistillationDetector(m, epochs=1), False),
    "VAEDetector": (lambda m: VAEDetector(m, epochs=1, n_samples=2), False),
    "DeepNeuralRejection": (lambda m: DeepNeuralRejection(m, layers=["body.1"], cv=2), True),
}


@pytest.mark.parametrize("name", sorted(IN_PLACE))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_model_writing_into_its_input_never_changes_the_users_x(name, dtype):
    factory, needs_y = IN_PLACE[name]
    est = factory(NormalisesInPlace()).set_params(random_state=0)
    X_train = X_FIT[:48].astype(dtype)  # a multiple of 8 rows: no padding copy
    X_train_before = X_train.copy()
    est.fit(X_train, Y_FIT[:48]) if needs_y else est.fit(X_train)
    np.testing.assert_array_equal(X_train, X_train_before)
    for n_rows in (8, 7):
        X = np.ascontiguousarray(X_FIT[:n_rows], dtype=dtype)
        X_before = X.copy()
        first = est.score_samples(X)
        np.testing.assert_array_equal(X, X_before)
        # and the scores do not drift with repeated calls on the same array
        np.testing.assert_array_equal(est.score_samples(X), first)


# ----------------------------------------------------------------------------- smaller items


def test_half_precision_tensors_are_widened_exactly(fitted):
    est = fitted["VAEDetector"]
    for dtype in (torch.bfloat16, torch.float16):
        x = torch.as_tensor(X_FIT[:9]).to(dtype)
        np.testing.assert_array_equal(est.score_samples(x), est.score_samples(x.float().numpy()))
    x16 = torch.as_tensor(X_FIT[:9]).half()
    np.testing.assert_array_equal(est.score_samples(x16.numpy()), est.score_samples(x16.float().numpy()))
    refit = ESTIMATORS["ModelDistillationDetector"][0]().fit(torch.as_tensor(X_FIT).bfloat16())
    assert refit.n_features_in_ == N_FEATURES


def test_inference_batch_size_set_after_fit_is_validated_at_predict_and_bounds_memory(fitted):
    est = fitted["VAEDetector"]
    expected = est.score_samples(X_FIT)
    try:
        est.set_params(inference_batch_size=1e6)
        with pytest.raises(
            InvalidParameterError, match="'inference_batch_size' parameter of VAEDetector must be an int"
        ):
            est.score_samples(X_FIT)
        for inference_batch_size in (10**6, None):
            est.set_params(inference_batch_size=inference_batch_size)
            # a row expands into 2 * (K + 1) * d values while scored: batches stay within the 2**22 budget
            assert est._inference_batch_size() * 2 * (est.n_samples + 1) * N_FEATURES <= 2**22
            np.testing.assert_array_equal(est.score_samples(X_FIT), expected)
        est.set_params(inference_batch_size=8)
        assert est._inference_batch_size() == 8
        np.testing.assert_array_equal(est.score_samples(X_FIT), expected)
    finally:
        est.set_params(inference_batch_size=None)


@pytest.mark.parametrize("name", sorted(TRAINED))
def test_single_distinct_row_fits_with_a_warning(name):
    est = ESTIMATORS[name][0]()
    with pytest.warns(UserWarning, match="fitted on a single row: it cannot learn how clean data varies"):
        est.fit(X_FIT[:1])
    with pytest.warns(UserWarning, match="fitted on 5 copies of a single row"):
        est.fit(np.repeat(X_FIT[:1], 5, axis=0))
    check_is_fitted(est)
