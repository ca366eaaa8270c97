"""The public contract checks on third-party detectors: a correct one passes, broken ones fail clearly."""

import copy

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from skadv.base import OffsetOutlierMixin
from skadv.utils import AttackSurface
from skadv.utils.discovery import all_estimators
from skadv.utils.estimator_checks import (
    check_concurrent_scoring,
    check_detector,
    check_user_objects_unmodified,
    parametrize_with_checks,
)


class MarginDetector(OffsetOutlierMixin, BaseEstimator):
    """A third-party detector: flags rows whose two top logits are close; written without skadv's base classes."""

    def __init__(self, model=None, *, contamination=0.1):
        self.model = model
        self.contamination = contamination

    def _margin(self, X):
        with torch.no_grad():
            top2 = self.model_(torch.as_tensor(X, dtype=torch.float32)).topk(2, dim=1).values
        return (top2[:, 0] - top2[:, 1]).double().numpy()

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float32)
        width = self.model[0].in_features
        if X.shape[1] != width:
            raise ValueError(f"X has rows shaped ({X.shape[1]},), but the model takes {width} features.")
        self.model_ = copy.deepcopy(self.model).eval()
        self.offset_ = float(np.percentile(self._margin(X), 100 * self.contamination))
        return self

    def score_samples(self, X):
        check_is_fitted(self)
        return self._margin(validate_data(self, X, dtype=np.float32, reset=False))

    def attack_surface(self):
        check_is_fitted(self)

        def forward(x):
            logits = self.model_(x)
            top2 = logits.topk(2, dim=1).values
            flagged = logits.max(dim=1).values + (self.offset_ - (top2[:, 0] - top2[:, 1]))
            return torch.cat([logits, flagged[:, None]], dim=1)

        n_classes = self.model_[-1].out_features
        return AttackSurface(
            forward=forward, classifier=self.model_, n_classes=n_classes, reject_index=n_classes, device="cpu"
        )


class MutatesItsInput(MarginDetector):
    """Broken: centres the user's X in place while fitting."""

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float32)
        X -= X.mean(axis=0)
        return super().fit(X)


class PredictChangesState(MarginDetector):
    """Broken: every scoring call moves its scores (a counter in the estimator)."""

    def score_samples(self, X):
        scores = super().score_samples(X)
        self.calls_ = getattr(self, "calls_", 0) + 1
        return scores + self.calls_


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def test_a_third_party_detector_passes_check_detector():
    with pytest.warns(UserWarning, match="skipped for MarginDetector") as skipped:
        check_detector(MarginDetector(_net()))
    # skops cannot write a raw torch module, and nothing in its settings makes fit fail midway
    assert sorted(str(w.message).split(" skipped")[0] for w in skipped) == [
        "check_fit_is_atomic", "check_skops_round_trip"
    ]


def test_check_detector_takes_the_users_data():
    X = np.random.RandomState(5).rand(40, 16).astype(np.float32)
    with pytest.warns(UserWarning, match="check_fit_is_atomic skipped"):
        check_detector(MarginDetector(_net()), X=X)
    with pytest.raises(ValueError, match="the model takes 16 features"):  # the detector's own error comes through
        check_detector(MarginDetector(_net()), X=X[:, :8])


def test_a_detector_mutating_its_input_fails_with_a_clear_message():
    with pytest.raises(AssertionError, match=r"MutatesItsInput\.fit modified its X"):
        check_user_objects_unmodified(MutatesItsInput(_net()))
    with pytest.raises(AssertionError, match="check_user_objects_unmodified failed for MutatesItsInput"):
        check_detector(MutatesItsInput(_net()))


def test_a_detector_whose_scoring_changes_its_state_fails_with_a_clear_message():
    message = r"PredictChangesState: concurrent \('score_samples'.* differs from serial"
    with pytest.raises(AssertionError, match=message):
        check_concurrent_scoring(PredictChangesState(_net()))
    with pytest.raises(AssertionError, match="check_concurrent_scoring failed for PredictChangesState"):
        check_detector(PredictChangesState(_net()))


@parametrize_with_checks([MarginDetector(_net())])
def test_parametrize_with_checks_runs_on_a_third_party_detector(estimator, check):
    check(estimator)


def test_parametrize_with_checks_names_each_case():
    mark = parametrize_with_checks([MarginDetector(_net(), contamination=0.2)])
    ids = mark.kwargs["ids"]
    assert "MarginDetector(contamination=0.2,model=Sequential)-check_pickle_round_trip" in ids
    assert "MarginDetector(contamination=0.2,model=Sequential)-check_attack_surface" in ids
    assert not any("interrupted" in case for case in ids)  # no skorch training: no interruption check


def test_all_estimators_lists_the_public_families():
    names = dict(all_estimators())
    assert {"DeepNeuralRejection", "DNRDetector", "VAEDetector", "PGD", "ImageCorruption"} <= set(names)
    classifiers = [name for name, _ in all_estimators("classifier")]
    assert classifiers == ["DeepNeuralRejection", "NystroemOneVsAll", "OneVsAllSVC"]
    assert "BaseDetector" not in names and "BaseAttack" not in names  # bases to subclass are not estimators
    detectors = {name for name, _ in all_estimators("detector")}
    assert "DNRDetector" in detectors and "DeepNeuralRejection" not in detectors
    assert {name for name, _ in all_estimators(["transformer", "classifier"])} == {
        "ImageCorruption", "DeepNeuralRejection", "NystroemOneVsAll", "OneVsAllSVC"
    }
    with pytest.raises(ValueError, match=r"type_filter must be None or among .*; got \['detectors'\]"):
        all_estimators("detectors")
