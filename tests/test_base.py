"""The shared base: persistence, device handling, version checks."""

import inspect
import io
import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.estimator_checks import parametrize_with_checks

from skadv import (
    AdversarialAEDetector,
    BaseDetector,
    InconsistentVersionWarning,
    ModelDistillationDetector,
    VAEDetector,
)
from skadv._core import module_from_state, module_to_state
from skadv.base import OffsetOutlierMixin, TrainedDetector

from _models import LazyMLP, seeded_mlp


def _fitted(X, **kwargs):
    return ModelDistillationDetector(seeded_mlp(X.shape[1], 3, 8), epochs=2, random_state=0, **kwargs).fit(X)


def test_fit_warnings_point_at_the_callers_line_through_any_entry_point():
    # One row cannot show how clean data varies: the warning names the user's line whether
    # fit is called directly or through scikit-learn's fit_predict.
    X = np.ones((1, 4), dtype=np.float32)
    for call in (lambda det: det.fit(X), lambda det: det.fit_predict(X)):
        det = ModelDistillationDetector(seeded_mlp(4, 3, 8), epochs=1, random_state=0)
        with pytest.warns(UserWarning, match="fitted on a single row") as record:
            call(det)
        assert {w.filename for w in record} == {__file__}


def test_module_state_is_plain_and_rebuilds_identically():
    module = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(3)
    )
    module(torch.rand(4, 1, 5, 5))
    module.eval()
    state = module_to_state(module)
    pickled = pickle.dumps(state)
    assert b"torch._utils" not in pickled  # no tensors inside
    rebuilt = module_from_state(state)
    x = torch.rand(3, 1, 5, 5)
    assert torch.equal(rebuilt(x), module(x))
    assert type(rebuilt[4]) is torch.nn.Linear and not rebuilt.training
    assert torch.equal(rebuilt[1].num_batches_tracked, module[1].num_batches_tracked)


def test_unmaterialised_lazy_module_survives_round_trip():
    rebuilt = module_from_state(module_to_state(LazyMLP(n_classes=2)))
    assert rebuilt(torch.rand(5, 7)).shape == (5, 2)


def test_loading_never_imports_unknown_modules():
    state = module_to_state(torch.nn.ReLU())
    state["class"] = "not_an_imported_package.layers:Evil"
    with pytest.raises(ValueError, match="unknown class"):
        module_from_state(state)


def test_version_mismatch_warns():
    X = np.random.RandomState(0).rand(20, 4)
    state = _fitted(X).__getstate__()
    state["_skadv_version"] = "0.0.1"
    det = ModelDistillationDetector.__new__(ModelDistillationDetector)
    with pytest.warns(InconsistentVersionWarning, match="0.0.1"):
        det.__setstate__(state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        joblib.load(_dump(_fitted(X)))


def _dump(obj):
    buffer = io.BytesIO()
    joblib.dump(obj, buffer)
    buffer.seek(0)
    return buffer


def test_cuda_request_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        _fitted(np.random.rand(10, 4), device="cuda")


def test_estimator_saved_for_cuda_loads_on_cpu():
    """A pickle saying device_='cuda' (stored weights are CPU numpy) maps to the CPU here."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    X = np.random.RandomState(0).rand(20, 4)
    det = _fitted(X)
    expected = det.score_samples(X)
    det.device_ = "cuda"  # what fitting with device='cuda' records
    with pytest.warns(UserWarning, match="CUDA is not available; using the CPU"):
        loaded = joblib.load(_dump(det))
    assert loaded.device_ == "cpu"
    np.testing.assert_array_equal(loaded.score_samples(X), expected)


def test_scores_do_not_depend_on_batch_composition():
    """Padding keeps float32 kernels from rounding a row by its batch (sklearn asks 1e-7)."""
    X = np.random.RandomState(3).rand(70, 9)
    det = _fitted(X, batch_size=16)
    full = det.adversarial_score(X)
    one_by_one = np.concatenate([det.adversarial_score(X[i : i + 1]) for i in range(len(X))])
    np.testing.assert_allclose(full, one_by_one, rtol=1e-6, atol=1e-8)


class _FusedAdam(torch.optim.Adam):
    def __init__(self, params, **kwargs):
        super().__init__(params, fused=True, **kwargs)


class _PlainAdam(torch.optim.Adam):
    def __init__(self, params, **kwargs):
        super().__init__(params, fused=False, foreach=False, **kwargs)


def test_named_adam_is_torchs_fused_adam():
    """'adam' runs fused=True (faster); a class keeps its own defaults."""
    X = np.random.RandomState(0).rand(60, 5)
    named = _fitted(X, optimizer="adam").adversarial_score(X)
    np.testing.assert_array_equal(named, _fitted(X, optimizer=_FusedAdam).adversarial_score(X))
    plain = _fitted(X, optimizer=_PlainAdam).adversarial_score(X)
    np.testing.assert_allclose(named, plain, rtol=1e-3, atol=1e-6)  # the same algorithm


def test_kl_divergence_matches_scipy_including_zero_probabilities():
    from scipy.special import rel_entr

    from skadv._core import distillation_loss, kl_divergence

    rng = np.random.RandomState(0)
    logits_p, logits_q = rng.randn(6, 4) * 3, rng.randn(6, 4) * 3
    logits_p[0, 1] = -1e4  # p underflows to 0 in one class: contributes 0
    log_p = torch.log_softmax(torch.as_tensor(logits_p), dim=1)
    log_q = torch.log_softmax(torch.as_tensor(logits_q), dim=1)
    assert log_p[0, 1].exp() == 0
    kl = kl_divergence(log_p, log_q).numpy()
    expected = rel_entr(log_p.exp().numpy(), log_q.exp().numpy()).sum(axis=1)
    np.testing.assert_allclose(kl, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(kl, distillation_loss(torch.as_tensor(logits_q), log_p.exp()).numpy(), rtol=1e-12)


class _FixedScores(OffsetOutlierMixin, BaseEstimator):
    """Outlier API over given scores (ignores X)."""

    def __init__(self, scores=(), offset=0.0):
        self.scores = scores
        self.offset = offset

    def score_samples(self, X):
        return np.asarray(self.scores, dtype=np.float64)

    @property
    def offset_(self):
        return self.offset


@pytest.mark.parametrize(
    "offset, expected",
    [(0.0, [-1, -1, 1, 1, 1, -1]), (-np.inf, [1, 1, 1, 1, 1, -1]), (np.inf, [-1, -1, -1, -1, 1, -1])],
)
def test_offset_outlier_mixin_predicts_from_score_and_offset(offset, expected):
    scores = np.array([-np.inf, -1.0, 0.0, 1.0, np.inf, np.nan])
    est = _FixedScores(scores, offset)
    with np.errstate(invalid="ignore"):  # inf - inf and nan - x: the undefined decisions
        decision, expected_decision = est.decision_function(None), scores - offset
    labels = est.predict(None)
    np.testing.assert_array_equal(decision, expected_decision)
    assert labels.dtype.kind == "i"
    np.testing.assert_array_equal(labels, expected)
    # +1 exactly where the decision is >= 0; where it is undefined, a score equal to the
    # infinite offset is accepted (DNR with threshold=None rejects nothing) and a NaN score flagged.
    defined = ~np.isnan(decision)
    np.testing.assert_array_equal(labels[defined] == 1, decision[defined] >= 0)


def test_log_proba_output_with_zero_probabilities_gives_finite_scores():
    """A model returning log-probabilities with log 0 = -inf: scores stay finite, not NaN."""
    from skadv import ProtectedModel

    class LogProba(torch.nn.Module):
        def forward(self, x):
            log_proba = torch.log_softmax(x[:, :3] * 50, dim=1)
            return torch.where(log_proba < -20, -torch.inf, log_proba)

    x = torch.as_tensor(np.random.RandomState(0).rand(40, 4) * 4 - 2, dtype=torch.float32)
    assert torch.isinf(LogProba()(x)).any()
    log_proba = ProtectedModel(LogProba(), output="log_proba")(x)
    assert torch.isfinite(log_proba).all()
    det = ModelDistillationDetector(LogProba(), model_output="log_proba", epochs=2, random_state=0).fit(x.numpy())
    assert np.isfinite(det.adversarial_score(x.numpy())).all()


# ----------------------------------------------------------------------------- the detector template


class _MinLogProba(BaseDetector):
    """A detector that trains nothing: the two hooks alone (score: minus the top log-probability)."""

    def __init__(self, model=None, *, model_output="auto", threshold=None, contamination=0.05,
                 inference_batch_size=None, preprocess_fn=None, input_shape=None, device="cpu", random_state=None):
        self.model, self.model_output, self.threshold = model, model_output, threshold
        self.contamination, self.inference_batch_size = contamination, inference_batch_size
        self.preprocess_fn = preprocess_fn
        self.input_shape, self.device, self.random_state = input_shape, device, random_state

    def _fit_detector(self, X, seed):
        pass

    def _score_tensor(self, x):
        return -self._model_log_proba(x).max(dim=1).values


class _LinearStudent(TrainedDetector):
    """The template's trained hooks: a linear student of the classifier's labels; score its cross-entropy."""

    def __init__(
        self,
        model=None,
        *,
        model_output="auto",
        threshold=None,
        contamination=0.05,
        epochs=2,
        batch_size=16,
        lr=1e-2,
        optimizer="adam",
        callbacks=None,
        verbose=False,
        inference_batch_size=None,
        preprocess_fn=None,
        input_shape=None,
        device="cpu",
        random_state=None,
    ):
        self.model, self.model_output, self.threshold, self.contamination = (
            model,
            model_output,
            threshold,
            contamination,
        )
        self.epochs, self.batch_size, self.lr, self.optimizer = epochs, batch_size, lr, optimizer
        self.callbacks, self.verbose, self.inference_batch_size = callbacks, verbose, inference_batch_size
        self.preprocess_fn, self.input_shape, self.device, self.random_state = (
            preprocess_fn,
            input_shape,
            device,
            random_state,
        )

    def _training_targets(self, X_model):
        with torch.inference_mode():
            log_proba = self.model_(torch.from_numpy(X_model).to(self.device_)).cpu()
        self.n_classes_ = log_proba.shape[1]
        return log_proba.argmax(dim=1).numpy()

    def _build_module(self, X_model):
        return torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(int(np.prod(X_model.shape[1:])), self.n_classes_)
        )

    def _net_options(self):
        return {"criterion": torch.nn.CrossEntropyLoss}

    def _store_trained_module(self, module):
        self.student_ = module

    def _score_tensor(self, x):
        labels = self._model_log_proba(x).argmax(dim=1, keepdim=True)
        return -torch.log_softmax(self.student_(x), dim=1).gather(1, labels)[:, 0]


@parametrize_with_checks(
    [_MinLogProba(LazyMLP()), _LinearStudent(LazyMLP(), random_state=0)],
    expected_failed_checks=lambda est: {
        "check_estimators_overwrite_params": "joblib hashes of an nn.Module parameter and its deep copy differ"
    },
)
def test_a_detector_implementing_only_the_hooks_passes_the_common_checks(estimator, check):
    check(estimator)


def test_the_trained_template_trains_its_module_and_keeps_the_history():
    X = np.random.RandomState(0).rand(64, 6).astype(np.float32)
    clf = seeded_mlp(6, 3, 8)
    det = _LinearStudent(clf, epochs=30, random_state=0).fit(X)
    assert len(det.history_) == 30 and det.history_[-1]["train_loss"] < det.history_[0]["train_loss"]
    assert not det.student_.training
    agreement = (det.student_(torch.from_numpy(X)).argmax(1) == clf(torch.from_numpy(X)).argmax(1)).float().mean()
    assert agreement > 0.8
    np.testing.assert_array_equal(
        det.adversarial_score(X), _LinearStudent(clf, epochs=30, random_state=0).fit(X).adversarial_score(X)
    )
    assert float((det.predict(X) == -1).mean()) == pytest.approx(0.05, abs=1 / 64)


def test_a_detector_missing_a_hook_cannot_be_instantiated():
    class NoScore(BaseDetector):
        def _fit_detector(self, X, seed):
            pass

    with pytest.raises(TypeError, match=r"abstract method.*_score_tensor"):
        NoScore()


@pytest.mark.parametrize("cls", [AdversarialAEDetector, ModelDistillationDetector, VAEDetector])
def test_shared_parameters_are_documented_once_with_each_class_defaults(cls):
    doc = cls.__doc__
    assert "%(" not in doc
    defaults = {name: p.default for name, p in inspect.signature(cls).parameters.items()}
    for name in defaults:  # every parameter is documented
        assert f"\n    {name} : " in doc or f"\n    {name}, " in doc or f", {name} : " in doc, name
    assert f"    epochs : int, default={defaults['epochs']}\n" in doc
    assert "    inference_batch_size : int, default=None\n" in doc
    assert ("predict_proba" in doc.split("encoder_net")[0].split("model :")[1]) is cls._accepts_sklearn_model


def test_inference_batch_size_is_apart_from_batch_size_and_memory_bounded():
    X = np.random.RandomState(0).rand(40, 9)
    det = _fitted(X, batch_size=16)
    # one input-sized row per scored row: a cache-sized 2 MiB by default on a CPU, at most the 16 MiB budget
    assert det._inference_batch_size() == 2**19 // 9 // 8 * 8
    assert det.set_params(inference_batch_size=24)._inference_batch_size() == 24
    assert det.set_params(inference_batch_size=10**9)._inference_batch_size() == 2**22 // 9 // 8 * 8
