"""skadv's contract checks, public so that a third-party detector can test itself as skadv's own do.

:func:`check_detector` runs every check on one estimator; :func:`parametrize_with_checks`
turns them into pytest cases. The checks complement scikit-learn's
(:func:`sklearn.utils.estimator_checks.parametrize_with_checks`): bad input is a clear
``ValueError`` and unfitted use a ``NotFittedError``; pickle, joblib and skops round trips
give bit-identical outputs; the user's arrays and model are never modified; concurrent
scoring equals serial scoring; a fit that fails or is interrupted leaves the estimator as
it was; ``attack_surface()`` gives differentiable scores.
"""

import functools
import importlib
import io
import pickle
import re
import signal
import warnings
from concurrent.futures import ThreadPoolExecutor
from unittest import SkipTest

import joblib
import numpy as np
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback
from torch import nn

from ..base import BaseDetector

__all__ = [
    "check_attack_surface",
    "check_bad_input_is_a_clear_value_error",
    "check_concurrent_scoring",
    "check_detector",
    "check_fit_is_atomic",
    "check_interrupted_fit",
    "check_unfitted_raises_not_fitted",
    "check_user_objects_unmodified",
    "parametrize_with_checks",
]

#: Every public method that takes X alone, for whichever estimator has it.
_PREDICT_METHODS = (
    "predict", "predict_proba", "score_samples", "decision_function", "adversarial_score", "detect", "correct",
    "distinct_labels", "reconstruct",
)
#: The methods a server calls concurrently.
_SCORING_METHODS = ("score_samples", "decision_function", "predict", "adversarial_score", "distinct_labels")

_N_FEATURES = 16
_BAD_KINDS = ("nan", "inf", "wrong_width", "one_d", "empty", "strings", "ragged", "complex")


# ----------------------------------------------------------------------------- data and helpers


class _Data:
    """The rows a check fits and scores: ``X`` (and labels ``y``) given, or seeded random ones."""

    def __init__(self, X=None, y=None):
        if X is None:
            rng = np.random.RandomState(0)
            self.X = rng.rand(60, _N_FEATURES).astype(np.float32)
            self.y = rng.randint(0, 3, size=60) if y is None else np.asarray(y)
            self.X_test = np.random.RandomState(1).rand(30, _N_FEATURES).astype(np.float32)
            self.X_many = np.random.RandomState(2).rand(64, _N_FEATURES).astype(np.float32)
        else:
            self.X = np.asarray(X, dtype=np.float32)
            self.y = np.random.RandomState(0).randint(0, 3, size=len(self.X)) if y is None else np.asarray(y)
            self.X_test = np.ascontiguousarray(self.X[::-1][:30])
            self.X_many = np.resize(self.X[::-1], (64, self.X.shape[1])).astype(np.float32)
        self.n_features = self.X.shape[1]


def _needs_y(estimator):
    """Whether ``fit`` takes labels (a classifier) or clean rows alone (a detector)."""
    return estimator.__sklearn_tags__().target_tags.required


def _fit(estimator, X, y):
    return estimator.fit(X, y[: len(X)]) if _needs_y(estimator) else estimator.fit(X)


def _user_modules(estimator):
    """The torch modules the user gave the estimator (through wrapped estimators too)."""
    found = []
    for value in estimator.get_params(deep=False).values():
        if isinstance(value, nn.Module):
            found.append(value)
        elif hasattr(value, "get_params") and not isinstance(value, type):
            found.extend(_user_modules(value))
    return found


def _materialise(module, n_features):
    """Run a module with lazy layers once, so that its parameters exist."""
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in module.parameters()):
        with torch.no_grad():
            module(torch.zeros(1, n_features))
    return module


def _methods(estimator):
    return [method for method in _PREDICT_METHODS if hasattr(estimator, method)]


def _outputs(estimator, X):
    """Every method's result as arrays: what a copy of a fitted estimator must reproduce bit for bit."""
    out = {}
    for method in _methods(estimator):
        result = getattr(estimator, method)(X)
        if isinstance(result, dict):  # detect/correct return a Bunch of arrays
            out.update({f"{method}.{key}": np.asarray(value) for key, value in result.items()})
        else:
            out[method] = np.asarray(result)
    return out


def _assert_same_outputs(got, expected, context=""):
    assert got.keys() == expected.keys(), f"{context}: the methods differ: {sorted(got)} != {sorted(expected)}"
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=f"{context}: {key} differs")


def _fitted_attributes(estimator):
    return {key: value for key, value in vars(estimator).items() if key.endswith("_") and not key.startswith("__")}


def _adaptive_forward(estimator):
    """The differentiable score an attack follows (the public attack protocol), and whether it is randomized."""
    surface = estimator.attack_surface()
    return surface.forward, surface.stochastic


# ----------------------------------------------------------------------------- bad input, unfitted use


def _bad_input(kind, n_rows, position, inf_value, n_features=_N_FEATURES):
    """Rows that are wrong in one way (``kind``), drawn from ``n_rows``, ``position`` and ``inf_value``."""
    X = np.random.RandomState(n_rows).rand(n_rows, n_features)
    if kind == "nan":
        X[position % n_rows, position % n_features] = np.nan
    elif kind == "inf":
        X[position % n_rows, position % n_features] = inf_value
    elif kind == "wrong_width":
        X = np.random.rand(n_rows, n_features + (position % 5) + 1) if position % 2 else X[:, : 1 + position % 15]
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


def _bad_input_message(kind, n_features=_N_FEATURES, at_fit=False):
    """What the error of each kind of bad input must say (a regular expression)."""
    if at_fit and kind == "wrong_width":  # a width the model cannot take: an error naming the shape
        return r"shape|features"
    return {
        "nan": "contains NaN",
        "inf": "contains infinity",
        "wrong_width": rf"X has \d+ features, but \w+ is expecting {n_features} features",
        "one_d": "Expected 2D array, got 1D array",
        "empty": r"0 sample\(s\)",
        "strings": "could not convert string to float",
        # One short row among full ones: numpy sees ragged rows, or a single row is too short.
        "ragged": rf"inhomogeneous shape|X has {n_features - 1} features",
        "complex": "Complex data not supported",
    }[kind]


def _assert_bad_input_raises(fitted, kind, n_rows, position, inf_value, n_features=_N_FEATURES):

    X = _bad_input(kind, n_rows, position, inf_value, n_features)
    for method in _methods(fitted):
        _assert_value_error(
            functools.partial(getattr(fitted, method), X), f"{type(fitted).__name__}.{method}", kind,
            _bad_input_message(kind, n_features),
        )


def _assert_value_error(call, what, kind, message):
    """``call()`` raises a ValueError whose message matches ``message``."""
    try:
        call()
    except ValueError as error:
        assert re.search(message, str(error)), (
            f"{what} on bad input ({kind}) raised ValueError({str(error)!r}), whose message does not match {message!r}."
        )
    else:
        raise AssertionError(f"{what} accepted bad input ({kind}) without a ValueError.")


def check_unfitted_raises_not_fitted(estimator, X=None, y=None):
    """Every scoring method of an unfitted estimator raises :class:`~sklearn.exceptions.NotFittedError`."""
    data, estimator = _Data(X, y), clone(estimator)
    for method in _methods(estimator):
        try:
            getattr(estimator, method)(data.X)
        except NotFittedError:
            continue
        raise AssertionError(f"Unfitted {type(estimator).__name__}.{method} did not raise NotFittedError.")


def check_bad_input_is_a_clear_value_error(estimator, X=None, y=None):
    """Bad rows (NaN, infinity, wrong width, 1-D, empty, strings, ragged, complex) raise a clear ValueError.

    At scoring, by every method of the fitted estimator; at fit, too (a wrong width
    there only where the estimator's torch model fixes the width).
    """

    data = _Data(X, y)
    fitted = _fit(clone(estimator), data.X, data.y)
    for kind in _BAD_KINDS:
        for n_rows, position, inf_value in ((1, 0, np.inf), (7, 23, -np.inf)):
            _assert_bad_input_raises(fitted, kind, n_rows, position, inf_value, data.n_features)
    for kind in _BAD_KINDS:
        fresh = clone(estimator)
        if kind == "wrong_width":
            models = _user_modules(fresh)
            if not models:
                continue  # a model-free estimator learns the width at fit: no width is wrong
            for model in models:
                _materialise(model, data.n_features)  # a lazy model now takes this width only
        X_bad = _bad_input(kind, 6, 3, np.inf, data.n_features)
        _assert_value_error(
            functools.partial(_fit, fresh, X_bad, data.y[:6]), f"{type(fresh).__name__}.fit", kind,
            _bad_input_message(kind, data.n_features, at_fit=True),
        )


# ----------------------------------------------------------------------------- persistence


def _pickle(estimator):
    return pickle.loads(pickle.dumps(estimator))


def _joblib(estimator):
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    buffer.seek(0)
    return joblib.load(buffer)


def _skops(estimator):
    """Round trip through skops, trusting exactly what must be trusted: skadv's, the detector's and the user's types."""
    try:
        sio = importlib.import_module("skops.io")
    except ImportError:
        raise SkipTest("skops is not installed") from None
    try:
        data = sio.dumps(estimator)
    except Exception as error:
        if type(estimator).__module__.partition(".")[0] == "skadv":
            raise
        # skadv's estimators persist their torch modules in a form skops can read (skadv.base's
        # TorchEstimatorMixin); a raw nn.Module attribute holds tensors skops cannot write.
        raise SkipTest(f"skops cannot write {type(estimator).__name__}: {error!r}") from None
    untrusted = sio.get_untrusted_types(data=data)
    own = {"skadv", type(estimator).__module__.partition(".")[0]}
    user = {
        f"{type(m).__module__}.{type(m).__qualname__}"
        for model in _user_modules(estimator)
        for m in model.modules()
        if not type(m).__module__.startswith("torch.")
    }
    others = {name for name in untrusted if name.partition(".")[0] not in own}
    expected = {name for name in user if name.partition(".")[0] not in own}
    assert others == expected, (
        f"skops lists untrusted types beyond skadv's, the estimator's package and the user's model: "
        f"{sorted(others - expected)}"
    )
    return sio.loads(data, trusted=untrusted)


_ROUND_TRIPS = {"pickle": _pickle, "joblib": _joblib, "skops": _skops}


def _check_round_trip(estimator, fmt, X=None, y=None, fitted=None):
    data = _Data(X, y)
    fitted = _fit(clone(estimator), data.X, data.y) if fitted is None else fitted
    loaded = _ROUND_TRIPS[fmt](fitted)
    context = f"{type(fitted).__name__} after a {fmt} round trip"
    _assert_same_outputs(_outputs(loaded, data.X_test), _outputs(fitted, data.X_test), context)
    # Every fitted network comes back with the same weights.
    for key, value in _fitted_attributes(fitted).items():
        if isinstance(value, nn.Module):
            restored = getattr(loaded, key).state_dict()
            assert restored.keys() == value.state_dict().keys(), f"{context}: {key}"
            assert all(torch.equal(restored[k], v) for k, v in value.state_dict().items()), f"{context}: {key}"
        elif isinstance(value, (str, tuple, int, float)):
            assert getattr(loaded, key) == value, f"{context}: {key}"
    if hasattr(fitted, "attack_surface"):  # and the score an attack follows
        (forward, stochastic), (loaded_forward, _) = _adaptive_forward(fitted), _adaptive_forward(loaded)
        x = torch.as_tensor(data.X_test[:4])
        with torch.no_grad():
            if stochastic:
                torch.manual_seed(0)
            expected = forward(x)
            if stochastic:
                torch.manual_seed(0)
            assert torch.equal(loaded_forward(x), expected), f"{context}: the attack surface's scores differ"


# ----------------------------------------------------------------------------- the user's objects


def check_user_objects_unmodified(estimator, X=None, y=None):
    """``fit`` and scoring leave the user's arrays, model (weights, modes, frozen layers) and parameters alone."""
    data, estimator = _Data(X, y), clone(estimator)
    models = _user_modules(estimator)
    before = []
    for model in models:
        _materialise(model, data.n_features).train()
        first = next(model.parameters(), None)
        if first is not None:
            first.requires_grad_(False)  # a frozen layer stays frozen
        flags = [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()]
        before.append(({k: v.clone() for k, v in model.state_dict().items()}, flags))
    params = estimator.get_params(deep=False)
    X_fit, y_fit, X_test = data.X.copy(), data.y.copy(), data.X_test.copy()
    _fit(estimator, X_fit, y_fit)
    _outputs(estimator, X_test)
    name = type(estimator).__name__
    np.testing.assert_array_equal(X_fit, data.X, err_msg=f"{name}.fit modified its X")
    np.testing.assert_array_equal(y_fit, data.y, err_msg=f"{name}.fit modified its y")
    np.testing.assert_array_equal(X_test, data.X_test, err_msg=f"{name}'s scoring modified its X")
    for model, (state, flags) in zip(models, before):
        after = [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()]
        assert after == flags, f"{name} changed the training mode or requires_grad flags of the user's model"
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[key]), f"{name} modified the user's model: {key}"
    # the estimator's own parameters are the very objects it was given (scikit-learn's clone contract)
    after = estimator.get_params(deep=False)
    assert after.keys() == params.keys(), f"{name}.fit changed its parameter names"
    for key, value in params.items():
        assert after[key] is value, f"{name}.fit replaced its parameter {key}"


# ----------------------------------------------------------------------------- serving threads


def _calls(estimator, n_calls, seed):
    """Mixed calls: (method, first row, row count) with 1 to 13 rows."""
    rng = np.random.RandomState(seed)
    names = [m for m in _SCORING_METHODS if hasattr(estimator, m)]
    return [(names[rng.randint(len(names))], rng.randint(0, 50), rng.randint(1, 14)) for _ in range(n_calls)]


def _serial_and_concurrent(estimator, calls, X, *, serial_estimator=None):
    def run(call, estimator=estimator):
        method, start, n_rows = call
        return getattr(estimator, method)(X[start : start + n_rows])

    serial = [run(call, serial_estimator or estimator) for call in calls]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(run, calls))
    for call, expected, got in zip(calls, serial, concurrent):
        np.testing.assert_array_equal(
            got, expected, err_msg=f"{type(estimator).__name__}: concurrent {call} differs from serial"
        )


def _check_concurrent_adaptive_scores(fitted):
    forward, stochastic = _adaptive_forward(fitted)
    if stochastic:
        return  # a randomized score differs between any two calls
    n_features = fitted.n_features_in_
    x = torch.as_tensor(np.random.RandomState(4).rand(40, n_features).astype(np.float32))
    slices = [(i % 30, 1 + i % 9) for i in range(200)]

    def run(bounds):
        with torch.no_grad():
            return forward(x[bounds[0] : bounds[0] + bounds[1]])

    serial = [run(b) for b in slices]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(run, slices))
    for bounds, expected, got in zip(slices, serial, concurrent):
        assert torch.equal(expected, got), f"{type(fitted).__name__}: concurrent attack-surface scores differ {bounds}"


def check_concurrent_scoring(estimator, X=None, y=None):
    """Concurrent scoring calls (8 threads) equal serial ones: fitted, just loaded, and on the attack surface."""
    data = _Data(X, y)
    fitted = _fit(clone(estimator), data.X, data.y)
    _serial_and_concurrent(fitted, _calls(fitted, 400, seed=3), data.X_many)
    # Hooks are not persisted: a loaded estimator registers them on first use, from many threads at once.
    _serial_and_concurrent(_pickle(fitted), _calls(fitted, 80, seed=7), data.X_many, serial_estimator=fitted)
    if hasattr(fitted, "attack_surface"):
        _check_concurrent_adaptive_scores(fitted)


# ----------------------------------------------------------------------------- fits that fail or stop


def _trains_a_net(estimator):
    """Detectors trained through skorch: they take ``epochs`` and ``callbacks``."""
    return {"epochs", "callbacks"} <= estimator.get_params(deep=False).keys()


class _FailAtEpoch(Callback):
    """Raises RuntimeError at the start of epoch ``epoch``."""

    def __init__(self, epoch=2):
        self.epoch = epoch

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.epoch:
            raise RuntimeError("callback failure")


class _InterruptAtBatch(Callback):
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


class _CtrlCAtEpochEnd(Callback):
    """Sends the process SIGINT at the end of epoch 1, as Ctrl-C would."""

    def on_epoch_end(self, net, **kwargs):
        signal.raise_signal(signal.SIGINT)


class _ExplodingClassifier:
    """A combiner whose fit fails (a bad setting only found mid-fit)."""

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self

    def fit(self, X, y):
        raise RuntimeError("combiner failure")

    def decision_function(self, X):
        raise AssertionError("never fitted")


def _break(estimator):
    """``estimator`` set so that its next fit fails midway (after the model copy is replaced)."""
    if _trains_a_net(estimator):
        return estimator.set_params(epochs=3, callbacks=[_FailAtEpoch(2)])
    params = estimator.get_params(deep=True)
    combiners = [key for key in params if key == "combiner" or key.endswith("__combiner")]
    if combiners:
        return estimator.set_params(**{combiners[0]: _ExplodingClassifier()})
    if isinstance(estimator, BaseDetector):  # its hook fails after the model is set up

        def failing_hook(X, seed):
            raise RuntimeError("detector hook failure")

        estimator._fit_detector = failing_hook
        return estimator
    raise SkipTest(f"{type(estimator).__name__} has no setting that fails midway through fit")


def check_fit_is_atomic(estimator, X=None, y=None):
    """A fit that fails midway leaves the previous fitted state (outputs bit-identical), or the estimator unfitted.

    The failure is induced through the estimator's settings: a training callback
    (``epochs`` and ``callbacks`` parameters), a failing ``combiner``, or the
    ``_fit_detector`` hook of a :class:`~skadv.base.BaseDetector`; other estimators skip
    this check.
    """
    data = _Data(X, y)
    name = type(estimator).__name__
    fitted = _fit(clone(estimator), data.X, data.y)
    before, attributes = _outputs(fitted, data.X_test), _fitted_attributes(fitted)
    broken = _break(fitted)
    try:
        _fit(broken, data.X[::-1] * 0.5, data.y[::-1])
    except RuntimeError as error:
        assert "failure" in str(error), f"{name}.fit failed with another error: {error!r}"
    else:
        raise AssertionError(f"{name}.fit did not fail with the failing setting")
    assert _fitted_attributes(broken) == attributes, f"A failed {name}.fit changed its fitted attributes"
    _assert_same_outputs(_outputs(broken, data.X_test), before, f"{name} after a failed refit")
    first = _break(clone(estimator))
    try:
        _fit(first, data.X, data.y)
    except RuntimeError:
        pass
    try:
        check_is_fitted(first)
    except NotFittedError:
        return
    raise AssertionError(f"A failed first {name}.fit left the estimator fitted")


def check_interrupted_fit(estimator, X=None, y=None):
    """An interrupted training (KeyboardInterrupt at a batch, Ctrl-C at an epoch's end) leaves no partial fit.

    The first fit stays unfitted and a refit keeps the previous detector. Only for
    estimators trained through skorch (``epochs`` and ``callbacks`` parameters).
    """
    if not _trains_a_net(estimator):
        raise SkipTest(f"{type(estimator).__name__} does not train a network through skorch callbacks")
    data = _Data(X, y)
    name = type(estimator).__name__
    for interruption in (_InterruptAtBatch, _CtrlCAtEpochEnd):
        fresh = clone(estimator).set_params(epochs=3, batch_size=16, callbacks=[interruption()])
        try:
            _fit(fresh, data.X, data.y)
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError(f"{name}.fit swallowed a KeyboardInterrupt ({interruption.__doc__})")
        try:
            check_is_fitted(fresh)
        except NotFittedError:
            pass
        else:
            raise AssertionError(f"An interrupted first {name}.fit left the estimator fitted")
    fitted = _fit(clone(estimator), data.X, data.y)
    before, attributes = fitted.score_samples(data.X[:20]), dict(vars(fitted))
    fitted.set_params(epochs=2, batch_size=16, callbacks=[_InterruptAtBatch(3)])
    try:
        _fit(fitted, data.X[::-1], data.y)
    except KeyboardInterrupt:
        pass
    np.testing.assert_array_equal(
        fitted.score_samples(data.X[:20]), before, err_msg=f"An interrupted {name} refit changed its scores"
    )
    for key in attributes:
        if key.endswith("_"):
            assert vars(fitted)[key] is attributes[key], f"An interrupted {name} refit replaced {key}"


# ----------------------------------------------------------------------------- the attack surface


def check_attack_surface(estimator, X=None, y=None):
    """``attack_surface()`` gives differentiable, finite scores with a flagged column where the estimator flags.

    ``forward`` maps a batch to ``(n, n_classes + 1)`` scores (``(n, n_classes)`` for a
    plain classifier surface) whose gradient with respect to the input exists and is
    finite; ``classifier`` gives ``(n, n_classes)`` scores; ``forward_with_escape``, when
    given, gives what ``forward`` and ``escape`` give. Skipped for estimators without
    ``attack_surface``.
    """
    if not hasattr(estimator, "attack_surface"):
        raise SkipTest(f"{type(estimator).__name__} has no attack_surface()")
    data = _Data(X, y)
    name = type(estimator).__name__
    fitted = _fit(clone(estimator), data.X, data.y)
    surface = fitted.attack_surface()
    x = torch.as_tensor(data.X_test[:8]).to(surface.device)
    if surface.input_shape is not None:
        x = x.reshape((x.shape[0], *surface.input_shape))
    x.requires_grad_(True)
    scores = surface.forward(x)
    width = surface.n_classes + (surface.reject_index is not None)
    assert tuple(scores.shape) == (x.shape[0], width), (
        f"{name}.attack_surface().forward gives scores shaped {tuple(scores.shape)}, not {(x.shape[0], width)}"
    )
    class_scores = scores[:, : surface.n_classes]
    assert torch.isfinite(class_scores).all(), f"{name}.attack_surface().forward gives non-finite class scores"
    # The flagged column may be a constant (a DNR threshold; -inf when nothing is rejected), never NaN.
    assert not torch.isnan(scores).any(), f"{name}.attack_surface().forward gives NaN scores"
    objective = class_scores.sum()
    if surface.reject_index is not None and torch.isfinite(scores[:, -1]).all():
        objective = objective - scores[:, -1].sum()
    (gradient,) = torch.autograd.grad(objective, x, allow_unused=True)
    assert gradient is not None, f"{name}.attack_surface().forward is not differentiable with respect to its input"
    assert torch.isfinite(gradient).all(), f"{name}.attack_surface().forward has non-finite gradients"
    with torch.no_grad():
        classes = surface.classifier(x)
    assert tuple(classes.shape) == (x.shape[0], surface.n_classes), (
        f"{name}.attack_surface().classifier gives scores shaped {tuple(classes.shape)}"
    )
    if surface.forward_with_escape is not None:
        with torch.no_grad():
            shared, escape = surface.forward_with_escape(x)
            assert torch.allclose(shared, surface.forward(x), rtol=1e-6, atol=1e-9, equal_nan=True), (
                f"{name}.attack_surface().forward_with_escape gives other scores than forward"
            )
            assert tuple(escape.shape) == (x.shape[0], surface.n_classes) and torch.allclose(
                escape, surface.escape(x), rtol=1e-6, atol=1e-9
            ), f"{name}.attack_surface().forward_with_escape gives other escape scores than escape"


# ----------------------------------------------------------------------------- running the checks


def _checks(estimator):
    """The checks that apply to ``estimator``, as functions of ``(estimator, X=None, y=None)``."""
    yield check_unfitted_raises_not_fitted
    yield check_bad_input_is_a_clear_value_error
    for fmt in _ROUND_TRIPS:
        check = functools.partial(_check_round_trip, fmt=fmt)
        functools.update_wrapper(check, _check_round_trip)
        check.__name__ = f"check_{fmt}_round_trip"
        yield check
    yield check_user_objects_unmodified
    yield check_concurrent_scoring
    yield check_fit_is_atomic
    if _trains_a_net(estimator):
        yield check_interrupted_fit
    if hasattr(estimator, "attack_surface"):
        yield check_attack_surface


def check_detector(detector, *, X=None, y=None):
    """Run skadv's contract checks on one detector (or classifier with a reject option).

    Each check works on clones of ``detector`` (never fits it): bad input raises a clear
    ``ValueError`` and unfitted use a ``NotFittedError``; pickle, joblib and (when
    installed) skops round trips give bit-identical outputs; the user's arrays and torch
    model are never modified; 8 threads scoring concurrently get the serial results;
    a fit that fails midway leaves the previous fitted state (or none), as does an
    interrupted training; ``attack_surface()``, when implemented, gives differentiable
    scores. Run scikit-learn's own checks as well
    (:func:`sklearn.utils.estimator_checks.check_estimator`).

    Parameters
    ----------
    detector : estimator
        Unfitted, with ``fit`` (on ``X`` alone, or on ``X, y`` when its tags say that
        it requires labels) and scoring methods (``score_samples``, ``predict``,
        ``decision_function``, ...). Its torch model must accept the rows of ``X``.
    X : array-like of shape (n_samples, n_features), default=None
        Rows to fit and score; None draws 60 seeded uniform rows of 16 features.
    y : array-like of shape (n_samples,), default=None
        Labels of ``X`` for estimators that need them; None draws 3 seeded classes.

    Raises
    ------
    AssertionError
        At the first check that fails, naming the check and what broke.

    Warns
    -----
    UserWarning
        For each check that does not apply to the detector (it is skipped).

    See Also
    --------
    parametrize_with_checks : the same checks as pytest cases.
    skadv.utils.discovery.all_estimators : skadv's own estimators, all checked this way.

    Examples
    --------
    A detector defined in an importable module (the pickle round trips need that; a
    third-party subclass of :class:`skadv.base.BaseDetector` gets ``attack_surface()``
    from its base) is checked the same way:

    >>> import torch
    >>> from torch import nn
    >>> from skadv import ConfidenceDetector
    >>> from skadv.utils.estimator_checks import check_detector
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> check_detector(ConfidenceDetector(net))  # raises AssertionError when a check fails
    """
    name = type(detector).__name__
    for check in _checks(detector):
        try:
            check(detector, X=X, y=y)
        except SkipTest as reason:
            warnings.warn(f"{check.__name__} skipped for {name}: {reason}", UserWarning, stacklevel=2)
        except AssertionError as error:
            raise AssertionError(f"{check.__name__} failed for {name}: {error}") from error


def parametrize_with_checks(estimators):
    """A pytest decorator running skadv's contract checks on each estimator, one case per check.

    The decorated test takes ``estimator`` and ``check`` and calls ``check(estimator)``;
    a check that does not apply raises :class:`unittest.SkipTest` (pytest reports it as
    skipped). The checks are those of :func:`check_detector`.

    Parameters
    ----------
    estimators : list of estimators
        Unfitted instances (each check fits clones of them).

    Returns
    -------
    decorator : pytest.mark.parametrize
        Case ids ``<estimator>-<check>``, e.g. ``ConfidenceDetector(model=...)-check_pickle_round_trip``.

    See Also
    --------
    check_detector : the same checks on one estimator, outside pytest.
    sklearn.utils.estimator_checks.parametrize_with_checks : scikit-learn's checks.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skadv import ConfidenceDetector
    >>> from skadv.utils.estimator_checks import parametrize_with_checks
    >>> net = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> @parametrize_with_checks([ConfidenceDetector(net)])
    ... def test_contract(estimator, check):
    ...     check(estimator)
    """
    import pytest

    cases, ids = [], []
    for estimator in estimators:
        for check in _checks(estimator):
            cases.append((estimator, check))
            ids.append(f"{_estimator_id(estimator)}-{check.__name__}")
    return pytest.mark.parametrize(("estimator", "check"), cases, ids=ids)


def _estimator_id(estimator):
    """``Class(param=value, ...)`` with the parameters set away from their defaults; objects by their type."""
    import inspect

    defaults = {
        name: p.default for name, p in inspect.signature(type(estimator).__init__).parameters.items() if name != "self"
    }
    plain = (bool, int, float, str, tuple, type(None))

    def short(value):
        return repr(value) if isinstance(value, plain) else type(value).__name__

    shown = [
        f"{name}={short(value)}"
        for name, value in sorted(estimator.get_params(deep=False).items())
        if not (isinstance(value, plain) and name in defaults and value == defaults[name])
    ]
    return f"{type(estimator).__name__}({','.join(shown)})"
