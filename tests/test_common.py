"""The contract every public estimator keeps, run on each configuration in ``_instances.INSTANCES``.

scikit-learn's common checks; bad input is a clear ValueError and unfitted use a
NotFittedError; pickle/joblib/skops round trips give bit-identical outputs; the user's
arrays and model are never modified; concurrent scoring equals serial scoring; a fit that
fails or is interrupted leaves the estimator as it was.
"""

import io
import pickle
import signal
import warnings
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback, EarlyStopping
from torch import nn

from _instances import BY_ID, IDS, INSTANCES, expected_failed_checks, fit_instance, needs_y, protected_model
from _models import Wave

N_FEATURES = 16
RNG = np.random.RandomState(0)
X_FIT = RNG.rand(60, N_FEATURES).astype(np.float32)
Y_FIT = RNG.randint(0, 3, size=60)
X_TEST = np.random.RandomState(1).rand(30, N_FEATURES).astype(np.float32)


#: Every public method that takes X alone, for whichever estimator has it.
PREDICT_METHODS = (
    "predict", "predict_proba", "score_samples", "decision_function", "adversarial_score", "detect", "correct",
    "distinct_labels", "reconstruct",
)


def fit(estimator, X=X_FIT, y=Y_FIT):
    return fit_instance(estimator, X, y)


def fresh(name):
    """An unfitted copy of the instance (its model deep-copied, so tests never share one)."""
    return clone(BY_ID[name])


def methods(estimator):
    return [method for method in PREDICT_METHODS if hasattr(estimator, method)]


def outputs(estimator, X):
    """Every method's result as arrays: what a copy of a fitted estimator must reproduce bit for bit."""
    out = {}
    for method in methods(estimator):
        result = getattr(estimator, method)(X)
        if isinstance(result, dict):  # detect/correct return a Bunch of arrays
            out.update({f"{method}.{key}": np.asarray(value) for key, value in result.items()})
        else:
            out[method] = np.asarray(result)
    return out


def assert_same_outputs(got, expected):
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def with_model(estimator, model):
    """``estimator`` protecting ``model`` instead (through a detector view too)."""
    key = "estimator__model" if "estimator" in estimator.get_params(deep=False) else "model"
    return estimator.set_params(**{key: model})


def materialise(model):
    """Run the (lazy) model once so that its parameters exist and its input width is fixed."""
    with torch.no_grad():
        model(torch.zeros(1, N_FEATURES))
    return model


@pytest.fixture(scope="module")
def fitted():
    return {name: fit(fresh(name)) for name in IDS}


# ----------------------------------------------------------------------------- scikit-learn's checks


@parametrize_with_checks(INSTANCES, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        # The checks fit on few, often constant rows: the detectors warn about them.
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)


# ----------------------------------------------------------------------------- bad input, unfitted use


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
# At fit, a width the model cannot take is the model's error (an input_shape mismatch).
BAD_FIT_MESSAGES = {**BAD_MESSAGES, "wrong_width": r"The model cannot process inputs shaped \(\d+,\)"}


@pytest.mark.parametrize("name", IDS)
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
    for method in methods(est):
        with pytest.raises(ValueError, match=BAD_MESSAGES[kind]):
            getattr(est, method)(X)


@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_at_fit_is_a_value_error(name, kind):
    est = fresh(name)
    model = protected_model(est)
    if kind == "wrong_width":
        if model is None:
            pytest.skip("a kernel machine learns the width at fit: no width is wrong")
        materialise(model)  # the lazy model now takes 16 features only
    X = _bad_input(kind, 6, 3, np.inf)
    with pytest.raises(ValueError, match=BAD_FIT_MESSAGES[kind]):
        fit(est, X, Y_FIT[:6])


@pytest.mark.parametrize("name", IDS)
def test_unfitted_raises_not_fitted(name):
    est = fresh(name)
    for method in methods(est):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            getattr(est, method)(X_FIT)


# ----------------------------------------------------------------------------- persistence


def _adaptive_forward(est):
    """The differentiable score an attack follows (the public attack protocol), and whether it is randomized."""
    surface = est.attack_surface()
    return surface.forward, surface.stochastic


def _pickle(est):
    return pickle.loads(pickle.dumps(est))


def _joblib(est):
    buffer = io.BytesIO()
    joblib.dump(est, buffer)
    buffer.seek(0)
    return joblib.load(buffer)


def _user_classes(est):
    """The classes skops must be told to trust besides skadv's: the user's model's, torch.nn's excepted."""
    model = protected_model(est)
    modules = model.modules() if model is not None else ()
    return {
        f"{type(m).__module__}.{type(m).__qualname__}" for m in modules if not type(m).__module__.startswith("torch.")
    }


def _skops(est):
    sio = pytest.importorskip("skops.io")
    data = sio.dumps(est)
    untrusted = sio.get_untrusted_types(data=data)
    assert {name for name in untrusted if not name.startswith("skadv.")} == _user_classes(est), untrusted
    return sio.loads(data, trusted=untrusted)


ROUND_TRIPS = {"pickle": _pickle, "joblib": _joblib, "skops": _skops}


@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("fmt", sorted(ROUND_TRIPS))
def test_round_trip_outputs_are_bit_identical(fitted, name, fmt):
    est = fitted[name]
    loaded = ROUND_TRIPS[fmt](est)
    assert_same_outputs(outputs(loaded, X_TEST), outputs(est, X_TEST))
    # Every fitted network comes back with the same weights (the AAE's hidden heads, the VAE, ...).
    for key, value in vars(est).items():
        if key.endswith("_") and isinstance(value, nn.Module):
            restored = getattr(loaded, key).state_dict()
            assert restored.keys() == value.state_dict().keys(), key
            assert all(torch.equal(restored[k], v) for k, v in value.state_dict().items()), key
        elif key.endswith("_") and isinstance(value, (str, tuple, int, float)):
            assert getattr(loaded, key) == value, key
    if protected_model(est) is not None:  # and the score an attack follows
        (forward, stochastic), (loaded_forward, _) = _adaptive_forward(est), _adaptive_forward(loaded)
        x = torch.as_tensor(X_TEST[:4])
        with torch.no_grad():
            if stochastic:
                torch.manual_seed(0)
            expected = forward(x)
            if stochastic:
                torch.manual_seed(0)
            assert torch.equal(loaded_forward(x), expected)


# ----------------------------------------------------------------------------- the user's objects


@pytest.mark.parametrize("name", IDS)
def test_user_arrays_and_model_are_never_modified(name):
    est = fresh(name)
    model = protected_model(est)
    if model is not None:
        materialise(model).train()
        next(model.parameters()).requires_grad_(False)  # a frozen layer stays frozen
        before = {k: v.clone() for k, v in model.state_dict().items()}
        flags = [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()]
    params = est.get_params(deep=False)
    X, y = X_FIT.copy(), Y_FIT.copy()
    fit(est, X, y)
    X_test = X_TEST.copy()
    outputs(est, X_test)
    np.testing.assert_array_equal(X, X_FIT)
    np.testing.assert_array_equal(y, Y_FIT)
    np.testing.assert_array_equal(X_test, X_TEST)
    if model is not None:
        assert [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()] == flags
        for key, value in model.state_dict().items():
            assert torch.equal(value, before[key]), key
    # the estimator's own parameters are the very objects it was given (sklearn's clone contract)
    after = est.get_params(deep=False)
    assert after.keys() == params.keys()
    for key, value in params.items():
        assert after[key] is value, key


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


# ----------------------------------------------------------------------------- serving threads

SCORING_METHODS = ("score_samples", "decision_function", "predict", "adversarial_score", "distinct_labels")


def _calls(est, n_calls, seed):
    """Mixed calls: (method, first row, row count) with 1 to 13 rows."""
    rng = np.random.RandomState(seed)
    names = [m for m in SCORING_METHODS if hasattr(est, m)]
    return [(names[rng.randint(len(names))], rng.randint(0, 50), rng.randint(1, 14)) for _ in range(n_calls)]


def _serial_and_concurrent(est, calls, X, *, serial_est=None):
    def run(call, est=est):
        method, start, n_rows = call
        return getattr(est, method)(X[start : start + n_rows])

    serial = [run(call, serial_est or est) for call in calls]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(run, calls))
    for call, expected, got in zip(calls, serial, concurrent):
        np.testing.assert_array_equal(got, expected, err_msg=str(call))


@pytest.mark.parametrize("name", IDS)
def test_concurrent_calls_equal_serial_calls(fitted, name):
    X = np.random.RandomState(2).rand(64, N_FEATURES).astype(np.float32)
    _serial_and_concurrent(fitted[name], _calls(fitted[name], 400, seed=3), X)


@pytest.mark.parametrize("name", IDS)
def test_concurrent_first_calls_after_loading_equal_serial(fitted, name):
    """Hooks are not persisted: a loaded estimator registers them on first use, from many threads at once."""
    X = np.random.RandomState(6).rand(64, N_FEATURES).astype(np.float32)
    calls = _calls(fitted[name], 80, seed=7)
    _serial_and_concurrent(_pickle(fitted[name]), calls, X, serial_est=fitted[name])


@pytest.mark.parametrize("name", [name for name in IDS if protected_model(BY_ID[name]) is not None])
def test_concurrent_adaptive_logits_equal_serial(fitted, name):
    """The differentiable paths read hidden layers too (DNR, AAE with heads): same guarantee."""
    forward, stochastic = _adaptive_forward(fitted[name])
    if stochastic:
        pytest.skip("a randomized score differs between any two calls")
    x = torch.as_tensor(np.random.RandomState(4).rand(40, N_FEATURES).astype(np.float32))
    slices = [(i % 30, 1 + i % 9) for i in range(200)]

    def run(bounds):
        with torch.no_grad():
            return forward(x[bounds[0] : bounds[0] + bounds[1]])

    serial = [run(b) for b in slices]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(run, slices))
    for expected, got in zip(serial, concurrent):
        assert torch.equal(expected, got)


# ----------------------------------------------------------------------------- fits that fail or stop


def _trains_a_net(name):
    """Detectors trained through skorch: they take ``epochs`` and ``callbacks`` (and keep a ``history_``)."""
    return {"epochs", "callbacks"} <= BY_ID[name].get_params(deep=False).keys()


TRAINED = [name for name in IDS if _trains_a_net(name)]


class InterruptAtBatch(Callback):
    """Raises KeyboardInterrupt at the end of training batch ``batch`` (counted from 1)."""

    def __init__(self, batch=1):
        self.batch = batch

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
    """``est`` set so that its next fit fails midway (after the model copy is replaced)."""
    if name in TRAINED:
        return est.set_params(epochs=3, callbacks=[FailAtEpoch(2)])
    params = est.get_params(deep=True)
    for key in ("combiner", "estimator__combiner"):
        if key in params:
            return est.set_params(**{key: ExplodingClassifier()})
    if hasattr(est, "_fit_detector"):  # any BaseDetector: its hook fails after the model is set up
        def failing_hook(X, seed):
            raise RuntimeError("detector hook failure")

        est._fit_detector = failing_hook
        return est
    pytest.skip(f"{type(est).__name__} has no setting that fails midway through fit")


@pytest.mark.parametrize("name", IDS)
def test_failed_refit_keeps_previous_predictions_bit_identical(name):
    est = fit(fresh(name))
    before = outputs(est, X_TEST)
    attributes = {key: value for key, value in vars(est).items() if key.endswith("_")}
    est = _break(name, est)
    with pytest.raises(RuntimeError, match="failure"):
        fit(est, X_FIT[::-1] * 0.5, Y_FIT[::-1])
    assert {key: value for key, value in vars(est).items() if key.endswith("_")} == attributes
    assert_same_outputs(outputs(est, X_TEST), before)


@pytest.mark.parametrize("name", IDS)
def test_failed_first_fit_leaves_the_estimator_unfitted(name):
    est = _break(name, fresh(name))
    with pytest.raises(RuntimeError, match="failure"):
        fit(est)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        est.predict(X_FIT)


@pytest.mark.parametrize("name", TRAINED)
@pytest.mark.parametrize("interruption", [InterruptAtBatch, CtrlCAtEpochEnd], ids=["at_a_batch", "ctrl_c_at_epoch_end"])
def test_interrupted_training_raises_and_leaves_no_fitted_detector(name, interruption):
    """A KeyboardInterrupt mid-batch, or Ctrl-C at an epoch's end (an interruption, not a stop)."""
    est = fresh(name).set_params(epochs=3, batch_size=16, callbacks=[interruption()])
    with pytest.raises(KeyboardInterrupt):
        fit(est)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        check_is_fitted(est)


@pytest.mark.parametrize("name", TRAINED)
def test_interrupted_refit_keeps_the_previous_detector(name):
    est = fit(fresh(name))
    before, attributes = est.score_samples(X_FIT[:20]), dict(vars(est))
    est.set_params(epochs=2, batch_size=16, callbacks=[InterruptAtBatch(3)])
    with pytest.raises(KeyboardInterrupt):
        fit(est, X_FIT[::-1])
    np.testing.assert_array_equal(est.score_samples(X_FIT[:20]), before)
    fitted_keys = [key for key in attributes if key.endswith("_")]
    assert all(vars(est)[key] is attributes[key] for key in fitted_keys)


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
