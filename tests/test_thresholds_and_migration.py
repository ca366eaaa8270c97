"""Thresholds that survive tuning (validation_fraction) and alibi-detect's calls with alibi's meaning."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from torch import nn

from skadv import AdversarialAEDetector, ConfidenceDetector, ModelDistillationDetector
from skadv.compat import alibi_correct, alibi_predict

from _attack_helpers import digits_data
from _models import seeded_mlp


@pytest.fixture(scope="module")
def digits():
    (X, y), (X_test, _) = digits_data(n_train=600, n_test=200)
    return X, y, X_test


@pytest.fixture(scope="module")
def teacher(digits):
    X, y, _ = digits
    return LogisticRegression(max_iter=300).fit(X, y)


# ----------------------------------------------------------------------------- validation_fraction


def test_validation_fraction_equals_a_manual_split_and_infer_threshold(digits, teacher):
    X, _, X_test = digits
    params = {"epochs": 3, "contamination": 0.1, "random_state": 0}
    held = ModelDistillationDetector(teacher, validation_fraction=0.25, **params).fit(X)
    X_train, X_val = train_test_split(X, test_size=0.25, random_state=0)
    manual = ModelDistillationDetector(teacher, **params).fit(X_train).infer_threshold(X_val, 90)
    # The held-out rows were not trained on: the same student, the same threshold.
    np.testing.assert_array_equal(held.adversarial_score(X_test), manual.adversarial_score(X_test))
    assert held.offset_ == manual.offset_ and held.threshold_ == manual.threshold_
    assert held.n_features_in_ == 64
    in_sample = ModelDistillationDetector(teacher, **params).fit(X)
    assert in_sample.threshold_ != held.threshold_
    # Deterministic under random_state; another seed holds out other rows.
    again = ModelDistillationDetector(teacher, validation_fraction=0.25, **params).fit(X)
    assert again.threshold_ == held.threshold_
    other = ModelDistillationDetector(teacher, validation_fraction=0.25, **{**params, "random_state": 1}).fit(X)
    assert other.threshold_ != held.threshold_


def test_validation_fraction_on_a_detector_without_training(digits, teacher):
    X, _, _ = digits
    det = ConfidenceDetector(teacher, validation_fraction=0.5, contamination=0.2, random_state=3).fit(X)
    _, X_val = train_test_split(X, test_size=0.5, random_state=3)
    assert det.threshold_ == np.percentile(det.adversarial_score(X_val), 80)
    assert np.mean(det.predict(X_val) == -1) == pytest.approx(0.2, abs=1 / len(X_val))


def test_validation_fraction_errors_name_the_problem(digits, teacher):
    X, _, _ = digits
    with pytest.raises(ValueError, match=r"validation_fraction=0.5 .* threshold=1.0 is given: pass one"):
        ConfidenceDetector(teacher, validation_fraction=0.5, threshold=1.0).fit(X)
    with pytest.raises(ValueError, match=r"leaves 0 rows to train on"):
        ConfidenceDetector(teacher, validation_fraction=0.9).fit(X[:2])
    with pytest.raises(ValueError, match="validation_fraction"):
        ConfidenceDetector(teacher, validation_fraction=1.0).fit(X)


def test_grid_search_best_estimator_carries_the_held_out_threshold(digits, teacher):
    X, y, _ = digits
    det = ModelDistillationDetector(FrozenEstimator(teacher), epochs=2, validation_fraction=0.3, random_state=0)

    def held_out_share_flagged(estimator, X, y=None):
        return -abs(np.mean(estimator.predict(X) == -1) - 0.05)

    search = GridSearchCV(det, {"temperature": [0.5, 1.0]}, cv=2, scoring=held_out_share_flagged).fit(X, y)
    best = search.best_estimator_
    expected = clone(det).set_params(**search.best_params_).fit(X)
    assert best.threshold_ == expected.threshold_ and best.validation_fraction == 0.3


# ----------------------------------------------------------------------------- alibi-detect's calls


def test_infer_threshold_takes_alibis_margin_and_batch_size(digits, teacher):
    X, _, X_test = digits
    det = ModelDistillationDetector(teacher, epochs=2, random_state=0).fit(X)
    scores = det.adversarial_score(X_test)
    det.infer_threshold(X_test, threshold_perc=99.0, margin=0.25, batch_size=int(1e10))
    assert det.threshold_ == np.percentile(scores, 99) + 0.25 and det.offset_ == -det.threshold_
    assert det.infer_threshold(X_test).threshold_ == np.percentile(scores, 95)  # skadv's default: 95
    with pytest.raises(ValueError, match=r"margin must be a finite real number"):
        det.infer_threshold(X_test, margin=np.nan)
    with pytest.raises(ValueError, match=r"batch_size must be a positive int.*inference_batch_size"):
        det.infer_threshold(X_test, batch_size=0)


def test_distillation_keeps_data_type_and_alibi_meta(digits, teacher):
    X, _, X_test = digits
    det = ModelDistillationDetector(teacher, epochs=2, data_type="image", random_state=0).fit(X)
    meta = alibi_predict(det, X_test)["meta"]
    assert meta == {"name": "ModelDistillation", "detector_type": "adversarial", "data_type": "image",
                    "online": False, "version": meta["version"]}
    with pytest.raises(ValueError, match="data_type"):
        ModelDistillationDetector(teacher, data_type="text").fit(X)


def test_adversarial_ae_alibi_correct_meta(digits):
    X, _, X_test = digits
    det = AdversarialAEDetector(seeded_mlp(), epochs=1, data_type="tabular", random_state=0).fit(X)
    assert alibi_correct(det, X_test)["meta"]["name"] == "AdversarialAE"
    assert alibi_correct(det, X_test)["meta"]["data_type"] == "tabular"


class SoftmaxStudent(nn.Module):
    """A student ending in a softmax, as in alibi-detect's examples."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return torch.softmax(self.body(x), dim=1)


def test_softmax_student_is_read_as_probabilities(digits, teacher):
    X, _, X_test = digits
    torch.manual_seed(0)
    student = SoftmaxStudent()
    det = ModelDistillationDetector(teacher, distilled_model=student, epochs=3, random_state=0).fit(X)
    assert det.student_output_ == "proba"
    # The score is the cross-entropy of the teacher against the student's probabilities themselves.
    with torch.no_grad():
        q = det.distilled_model_(torch.from_numpy(X_test)).double().clamp_min(1e-12)
    p = teacher.predict_proba(X_test)
    expected = -(p * torch.log(q / q.sum(1, keepdim=True)).numpy()).sum(1)
    np.testing.assert_allclose(det.adversarial_score(X_test), expected, rtol=1e-5)
    # The same student without its softmax, read as logits, learns the same thing.
    logits = ModelDistillationDetector(teacher, distilled_model=student.body, epochs=3, random_state=0).fit(X)
    assert logits.student_output_ == "logits"
    np.testing.assert_allclose(det.adversarial_score(X_test), logits.adversarial_score(X_test), rtol=1e-4)
