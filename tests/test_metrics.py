"""Tests of skadv.metrics: detection metrics, security evaluation, the attack scorer."""

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from skadv import ModelDistillationDetector
from skadv.attacks import FGSM, PGD, AttackFailureWarning, AutoAttack
from skadv.metrics import (
    accuracy_with_rejection,
    adversarial_scores,
    clean_vs_attacked,
    detection_auroc,
    detection_threshold,
    evasion_rate,
    loss_by_confidence,
    make_attack_scorer,
    security_evaluation,
    tpr_at_fpr,
    tpr_at_threshold,
)

from _attack_helpers import SurfaceView, accuracy, digits_data, train_mlp


@pytest.fixture(scope="module")
def metric_digits():
    """Shuffled metric_digits: 1000 training and 200 test rows, as ((X, y), (X_test, y_test))."""
    return digits_data(n_train=1000, n_test=200)


@pytest.fixture(scope="module")
def mlp(metric_digits):
    (X, y), _ = metric_digits
    return train_mlp(X, y)


@pytest.fixture(scope="module")
def detector(metric_digits, mlp):
    (X, _), _ = metric_digits
    return ModelDistillationDetector(mlp, epochs=10, batch_size=64, lr=3e-3, random_state=0).fit(X)


# --------------------------------------------------------------------------- detection metrics


def test_detection_auroc_counts_correctly_ordered_pairs():
    clean = [0.1, 0.4, 0.35, 0.8]
    attacked = [0.9, 0.3, 0.5]
    # Pairs (attacked > clean): 0.9 beats 4, 0.3 beats 1, 0.5 beats 3 -> 8 of 12.
    assert detection_auroc(clean, attacked) == pytest.approx(8 / 12)
    assert detection_auroc([0, 1], [2, 3]) == 1.0
    assert detection_auroc([2, 3], [0, 1]) == 0.0
    assert detection_auroc([1, 1], [1]) == 0.5  # ties count half


def test_tpr_at_fpr_reads_the_roc_curve():
    clean = np.arange(100) / 100.0  # 0.00 .. 0.99
    attacked = np.array([0.995, 0.97, 0.955, 0.5, 0.2])
    # At 5% FPR the threshold sits just above 0.94: three of five attacked exceed it.
    assert tpr_at_fpr(clean, attacked, fpr=0.05) == pytest.approx(0.6)
    assert tpr_at_fpr(clean, attacked, fpr=0.0) == pytest.approx(0.2)
    assert tpr_at_fpr(clean, attacked, fpr=0.5) == pytest.approx(0.8)
    assert tpr_at_fpr(clean, attacked, fpr=1.0) == 1.0


def test_detection_metrics_validate_input():
    with pytest.raises(ValueError, match="at least one"):
        detection_auroc([], [1.0])
    with pytest.raises(ValueError, match="finite"):
        tpr_at_fpr([np.nan, 1.0], [2.0])
    with pytest.raises(ValueError, match="fpr"):
        tpr_at_fpr([0.0], [1.0], fpr=1.5)


def test_accuracy_with_rejection_semantics():
    y_true = np.array([0, 1, 2, 3, 4])
    y_pred = np.array([0, 1, 9, 9, 4])
    rejected = np.array([False, True, True, False, False])
    # Clean: correct and accepted -> rows 0 and 4.
    assert accuracy_with_rejection(y_true, y_pred, rejected=rejected) == pytest.approx(0.4)
    # Attacked: rejected or (accepted and correct) -> rows 0, 1, 2, 4.
    assert accuracy_with_rejection(y_true, y_pred, rejected=rejected, attacked=True) == pytest.approx(0.8)
    # Mixed set, per-row flags.
    attacked = np.array([False, True, False, False, False])
    assert accuracy_with_rejection(y_true, y_pred, rejected=rejected, attacked=attacked) == pytest.approx(0.6)
    # DNR convention: label -1 means rejected.
    assert accuracy_with_rejection([0, 1, 2], [0, -1, 1], attacked=True) == pytest.approx(2 / 3)
    assert accuracy_with_rejection([0, 1, 2], [0, -1, 1], sample_weight=[2, 1, 1]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[2, 3\]"):
        accuracy_with_rejection([0, 1], [0, 1, 2])


# --------------------------------------------------------------------------- security evaluation


def test_security_evaluation_on_a_plain_model(metric_digits, mlp):
    _, (X, y) = metric_digits
    eps = [0.0, 0.05, 0.1, 0.2]
    res = security_evaluation(mlp, PGD, X, y, eps, step_size=0.02, max_iter=10, random_state=0)
    np.testing.assert_array_equal(res.eps_values, eps)
    assert res.accuracy[0] == pytest.approx(accuracy(mlp, X, y))
    assert np.all(np.diff(res.accuracy) <= 0) and res.accuracy[-1] < 0.05
    assert np.all(np.isnan(res.detection_rate))
    np.testing.assert_allclose(res.accuracy_with_rejection, res.accuracy)
    np.testing.assert_allclose(res.evasion_rate, 1 - res.accuracy)
    assert res.attack == "PGD" and res.adaptive is False
    assert res.clean_accuracy_with_rejection == res.accuracy[0]
    # The attack-failure checks ran and stay silent on a plain, well-behaved model.
    assert {"stalled", "monotone"} <= set(res.checks) and res.fired == []
    np.testing.assert_array_equal(res.checks["monotone"].curve, res.evasion_rate)


class _Overshoot(torch.nn.Module):
    """Class 1 only on the band 0.1 < x < 0.3: one large gradient step from x < 0.1 jumps over it."""

    def forward(self, x):
        band = 1 - ((x[:, :1] - 0.2) / 0.1) ** 2
        return torch.cat([torch.zeros_like(band), band], dim=1)


def test_security_evaluation_warns_when_evasion_drops_with_the_budget():
    X = np.linspace(0.0, 0.08, 20, dtype=np.float32)[:, None]
    y = np.zeros(20, dtype=int)
    with pytest.warns(AttackFailureWarning, match="check 'monotone'.*Try"):
        res = security_evaluation(_Overshoot(), FGSM, X, y, [0.0, 0.15, 0.5])
    # By hand: +0.15 lands every row inside the band, +0.5 jumps over it.
    np.testing.assert_array_equal(res.evasion_rate, [0.0, 1.0, 0.0])
    assert res.fired == ["monotone"] and res.checks["monotone"].value == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", AttackFailureWarning)
        assert security_evaluation(_Overshoot(), FGSM, X, y, [0.0, 0.15, 0.5], failure_checks=False).checks == {}


def test_security_evaluation_warns_on_a_masked_detector(metric_digits, detector):
    _, (X, y) = metric_digits
    X, y = X[:100], y[:100]
    # The deployed detector unchanged, its input gradient zero: an attack that cannot move.
    masked = SurfaceView(detector, lambda forward: lambda x: forward(x * 0 + x.detach()))
    params = dict(step_size=0.02, max_iter=10, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = security_evaluation(masked, PGD, X, y, [0.0, 0.1], **params)
    assert {"stalled", "non_adaptive"} <= set(res.fired)
    messages = [str(w.message) for w in caught if issubclass(w.category, AttackFailureWarning)]
    assert any("check 'non_adaptive'" in m and "Try" in m for m in messages)
    # Its deployed decision comes from the surface alone (it has no predict): the detector's.
    X_adv = PGD(masked, eps=0.1, **params).generate(X, y)
    flagged = detector.predict(X_adv) == -1
    with torch.no_grad():
        wrong = detector.model_(torch.as_tensor(X_adv)).argmax(1).numpy() != y
    assert res.evasion_rate[1] == pytest.approx(np.mean(wrong & ~flagged))
    assert res.detection_rate[1] == pytest.approx(np.mean(flagged))
    # The unmasked detector: the same checks stay silent.
    res = security_evaluation(detector, PGD, X, y, [0.0, 0.1], **params)
    assert not {"stalled", "non_adaptive", "monotone"} & set(res.fired)


def test_evasion_rate_and_tpr_at_threshold_by_hand():
    y_true, y_pred = [0, 1, 2, 2, 1], [1, 1, 0, -1, 2]
    assert evasion_rate(y_true, y_pred) == pytest.approx(3 / 5)
    # An explicit mask replaces the reject label: row 3 (-1, not in the mask) is a wrong label.
    assert evasion_rate(y_true, y_pred, rejected=[True, False, True, False, False]) == pytest.approx(2 / 5)
    assert evasion_rate(y_true, y_pred) == pytest.approx(1 - accuracy_with_rejection(y_true, y_pred, attacked=True))
    # Strictly above the fixed threshold, as the detectors' predict.
    assert tpr_at_threshold([0.1, 0.4, 0.5, 0.9], 0.4) == 0.5
    assert tpr_at_threshold([0.1, 0.4], -np.inf) == 1.0
    with pytest.raises(ValueError, match="at least one"):
        tpr_at_threshold([], 0.0)


def test_security_evaluation_adaptive_vs_not_on_detector(metric_digits, mlp, detector):
    _, (X, y) = metric_digits
    eps = [0.0, 0.1]
    params = dict(step_size=0.01, max_iter=40, random_state=0)
    plain = security_evaluation(detector, PGD, X, y, eps, adaptive=False, **params)
    adaptive = security_evaluation(detector, PGD, X, y, eps, **params)
    assert plain.adaptive is False and adaptive.adaptive is True
    # eps = 0 is the clean data: same for both, a few false positives.
    assert plain.detection_rate[0] == adaptive.detection_rate[0] < 0.15
    assert plain.accuracy_with_rejection[0] <= plain.accuracy[0]
    # Same numbers as a direct computation.
    X_adv = PGD(detector, eps=0.1, **params).generate(X, y)
    with torch.no_grad():
        wrong = mlp(torch.as_tensor(X_adv)).argmax(1).numpy() != y
    flagged = detector.predict(X_adv) == -1
    assert adaptive.evasion_rate[1] == pytest.approx(np.mean(wrong & ~flagged))
    assert adaptive.detection_rate[1] == pytest.approx(np.mean(flagged))
    assert adaptive.accuracy_with_rejection[1] == pytest.approx(1 - np.mean(wrong & ~flagged))
    # The adaptive attack is the stronger one against the defended system.
    assert adaptive.evasion_rate[1] > plain.evasion_rate[1] + 0.1
    assert adaptive.detection_rate[1] < plain.detection_rate[1]

    # The detector as the last step of a Pipeline of identity steps: the same evaluation.
    piped = security_evaluation(make_pipeline("passthrough", detector), PGD, X, y, eps, **params)
    np.testing.assert_array_equal(piped.evasion_rate, adaptive.evasion_rate)
    np.testing.assert_array_equal(piped.detection_rate, adaptive.detection_rate)
    with pytest.raises(ValueError, match="no gradient"):
        security_evaluation(make_pipeline(StandardScaler(), detector), PGD, X, y, eps, **params)


def test_security_evaluation_accepts_an_attack_template(metric_digits, mlp):
    _, (X, y) = metric_digits
    template = FGSM(mlp, norm=2)
    res = security_evaluation(mlp, template, X[:50], y[:50], [0.5, 1.0])
    assert template.eps == 0.1 and template.target is mlp  # not modified
    assert res.accuracy[1] <= res.accuracy[0]
    with pytest.raises(ValueError, match="non-negative"):
        security_evaluation(mlp, PGD, X[:5], y[:5], [-0.1])
    with pytest.raises(ValueError, match="attack"):
        security_evaluation(mlp, object, X[:5], y[:5], [0.1])


# --------------------------------------------------------------------------- attack scorer


def test_attack_scorer_equals_manual_auroc(metric_digits, detector):
    _, (X, y) = metric_digits
    params = {"eps": 0.1, "step_size": 0.02, "max_iter": 10, "random_state": 0}
    scorer = make_attack_scorer(PGD, **params)
    # By hand: the threshold fixed at 5 % FPR on the evaluated clean rows, attacked at that
    # threshold, and the positives are the adversarial examples that fool the classifier.
    det = copy.deepcopy(detector).infer_threshold(X, threshold_perc=95)
    X_adv = PGD(det, **params).generate(X, y)
    with torch.no_grad():
        fooled = det.model_(torch.as_tensor(X_adv)).argmax(1).numpy() != y
    assert 0 < fooled.sum() < len(y)
    expected = detection_auroc(det.adversarial_score(X), det.adversarial_score(X_adv)[fooled])
    threshold_before = detector.threshold_
    assert scorer(detector, X, y) == pytest.approx(expected)
    assert detector.threshold_ == threshold_before  # the fold's estimator is not modified
    for metric in ("tpr", "tpr_at_fpr"):
        tpr = make_attack_scorer(PGD, metric=metric, fpr=0.05, **params)
        assert tpr(detector, X, y) == pytest.approx(np.mean(det.adversarial_score(X_adv)[fooled] > det.threshold_))
    # fpr=None keeps the detector's own (in-sample) threshold: the attack targets that one.
    X_own = PGD(detector, **params).generate(X, y)
    with torch.no_grad():
        fooled_own = detector.model_(torch.as_tensor(X_own)).argmax(1).numpy() != y
    own = make_attack_scorer(PGD, metric="tpr", fpr=None, **params)
    assert own(detector, X, y) == pytest.approx(
        tpr_at_threshold(detector.adversarial_score(X_own)[fooled_own], detector.threshold_)
    )
    # Non-adaptive attacks look easier to detect than adaptive ones.
    plain = make_attack_scorer(PGD, adaptive=False, **params)
    assert plain(detector, X, y) > scorer(detector, X, y)
    # Picklable, for joblib's process-based backends.
    assert pickle.loads(pickle.dumps(scorer))(detector, X, y) == pytest.approx(expected)


def test_attack_scorer_metric_that_rejecting_everything_cannot_game(metric_digits, detector):
    _, (X, y) = metric_digits
    X, y = X[:100], y[:100]
    params = {"eps": 0.1, "step_size": 0.02, "max_iter": 10, "random_state": 0}
    reject_all = copy.deepcopy(detector)
    reject_all.threshold_, reject_all.offset_ = -np.inf, np.inf
    assert np.all(reject_all.predict(X) == -1)
    X_adv = PGD(reject_all, **params).generate(X, y)
    with torch.no_grad():
        labels = detector.model_(torch.as_tensor(X_adv)).argmax(1).numpy()
    # The old headline: accuracy with rejection on attacked inputs alone is perfect...
    assert accuracy_with_rejection(y, labels, rejected=reject_all.predict(X_adv) == -1, attacked=True) == 1.0
    assert make_attack_scorer(PGD, metric="evasion_rate", fpr=None, **params)(reject_all, X, y) == 0.0
    # ...clean and attacked rows together are not: every clean row is lost.
    combined = make_attack_scorer(PGD, metric="accuracy_with_rejection", fpr=None, **params)
    assert combined(reject_all, X, y) == 0.5
    # By hand for the real detector at its fixed threshold.
    det = copy.deepcopy(detector).infer_threshold(X, threshold_perc=95)
    X_adv = PGD(det, **params).generate(X, y)
    with torch.no_grad():
        clean_labels = det.model_(torch.as_tensor(X)).argmax(1).numpy()
        adv_labels = det.model_(torch.as_tensor(X_adv)).argmax(1).numpy()
    clean_ok = (clean_labels == y) & (det.predict(X) == 1)
    adv_ok = (adv_labels == y) | (det.predict(X_adv) == -1)
    honest = make_attack_scorer(PGD, metric="accuracy_with_rejection", **params)(detector, X, y)
    assert honest == pytest.approx((clean_ok.sum() + adv_ok.sum()) / (2 * len(y)))
    assert honest > 0.5


def test_attack_scorer_successful_only(metric_digits, detector):
    _, (X, y) = metric_digits
    scorer = make_attack_scorer(FGSM, eps=0.05, adaptive=False, fpr=None)
    X_adv = FGSM(detector, eps=0.05, adaptive=False).generate(X, y)
    with torch.no_grad():
        fooled = detector.model_(torch.as_tensor(X_adv)).argmax(1).numpy() != y
    assert 0 < fooled.sum() < len(y)
    expected = detection_auroc(detector.adversarial_score(X), detector.adversarial_score(X_adv)[fooled])
    assert scorer(detector, X, y) == pytest.approx(expected)


def test_attack_scorer_in_grid_search(metric_digits, mlp):
    (X, y), _ = metric_digits
    X, y = X[:400], y[:400]
    det = ModelDistillationDetector(mlp, epochs=5, batch_size=64, lr=3e-3, random_state=0)
    search = GridSearchCV(
        det,
        {"loss_type": ["kld", "xent"]},
        scoring=make_attack_scorer(PGD, eps=0.1, step_size=0.02, max_iter=10, random_state=0),
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
    ).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    # AUROCs, and they really differ: an adaptive attack can push adversarial
    # scores *below* the clean ones (AUROC < 0.5), so tuning against it matters.
    assert np.all((scores >= 0.0) & (scores <= 1.0)) and abs(scores[0] - scores[1]) > 0.05
    assert search.best_params_["loss_type"] == ["kld", "xent"][int(np.argmax(scores))]
    assert search.best_score_ == pytest.approx(scores.max())
    # Works in cross_val_score too, with y left out (the model's predictions are attacked).
    cv_scores = cross_val_score(det, X, scoring=make_attack_scorer(FGSM, eps=0.1), cv=2)
    assert cv_scores.shape == (2,) and np.all((cv_scores >= 0) & (cv_scores <= 1))


def test_attack_scorer_on_a_pipeline_ending_in_a_detector(metric_digits, mlp):
    (X, y), _ = metric_digits
    X, y = X[:300], y[:300]
    det = ModelDistillationDetector(mlp, epochs=3, batch_size=64, lr=3e-3, random_state=0)
    scorer = make_attack_scorer(PGD, eps=0.1, step_size=0.02, max_iter=5, random_state=0)
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    grid = [0.5, 2.0]
    bare = GridSearchCV(det, {"temperature": grid}, scoring=scorer, cv=cv).fit(X, y)
    # Identity steps before the detector: the detector is attacked on the Pipeline's input,
    # so the search gives exactly the bare detector's scores.
    pipe = make_pipeline(FunctionTransformer(), "passthrough", det)
    search = GridSearchCV(pipe, {"modeldistillationdetector__temperature": grid}, scoring=scorer, cv=cv).fit(X, y)
    expected = bare.cv_results_["mean_test_score"]
    assert np.all((expected >= 0) & (expected <= 1)) and expected[0] != expected[1]
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], expected)
    assert search.best_params_["modeldistillationdetector__temperature"] == bare.best_params_["temperature"]

    # A numpy transformer before the detector blocks every gradient: a clear error, naming the step.
    for step, name in [(StandardScaler(), "standardscaler"), (FunctionTransformer(np.sqrt), "functiontransformer")]:
        fitted = make_pipeline(step, ModelDistillationDetector(mlp, epochs=1, random_state=0)).fit(X)
        with pytest.raises(ValueError, match=f"step '{name}'.*no gradient"):
            scorer(fitted, X, y)


def test_attack_scorer_validation(mlp, metric_digits):
    _, (X, y) = metric_digits
    with pytest.raises(ValueError, match="attack_cls"):
        make_attack_scorer("PGD")
    with pytest.raises(ValueError, match="metric"):
        make_attack_scorer(PGD, metric="f1")
    with pytest.raises(ValueError, match="fpr"):
        make_attack_scorer(PGD, fpr=1.0)
    assert make_attack_scorer().attack is AutoAttack  # the ensemble by default
    with pytest.raises(ValueError, match="adversarial score"):
        make_attack_scorer(PGD)(mlp, X, y)
    assert "PGD" in repr(make_attack_scorer(PGD, eps=0.1))


# --------------------------------------------------------------------------- scores, thresholds, binning


def test_adversarial_scores_and_detection_threshold_match_predict(metric_digits, detector):
    _, (X, _) = metric_digits
    scores = adversarial_scores(detector, X)
    np.testing.assert_array_equal(scores, detector.adversarial_score(X))
    threshold = detection_threshold(detector)
    assert threshold == detector.threshold_ == -detector.offset_
    np.testing.assert_array_equal(scores > threshold, detector.predict(X) == -1)
    # A Pipeline scores and thresholds with its last step.
    pipe = make_pipeline(FunctionTransformer(), detector)
    np.testing.assert_allclose(adversarial_scores(pipe, X), -detector.score_samples(X))
    assert detection_threshold(pipe) == threshold
    with pytest.raises(ValueError, match="'estimator' parameter of adversarial_scores"):
        adversarial_scores(StandardScaler(), X)


def test_loss_by_confidence_by_hand():
    confidence = [0.05, 0.3, 0.45, 0.9, 1.0]
    loss = [1.0, 0.8, 0.6, 0.1, 0.3]
    result = loss_by_confidence(confidence, loss, y_correct=[0, 1, 0, 1, 1], n_bins=4)
    np.testing.assert_allclose(result.bin_edges, [0, 0.25, 0.5, 0.75, 1.0])
    # Bins: [0, .25): 0.05; [.25, .5): 0.3, 0.45; [.5, .75): none; [.75, 1]: 0.9, 1.0 (the last includes 1).
    assert result.count.tolist() == [1, 2, 0, 2]
    np.testing.assert_allclose(result.mean_loss, [1.0, 0.7, np.nan, 0.2])
    np.testing.assert_allclose(result.std_loss, [0.0, 0.1, np.nan, 0.1])
    np.testing.assert_allclose(result.mean_confidence, [0.05, 0.375, np.nan, 0.95])
    np.testing.assert_allclose(result.accuracy, [0.0, 0.5, np.nan, 1.0])
    # Quantile bins hold equal numbers of rows and still span [0, 1].
    quantile = loss_by_confidence(confidence[1:], loss[1:], n_bins=2, strategy="quantile")
    assert quantile.count.tolist() == [2, 2] and quantile.accuracy is None
    np.testing.assert_allclose(quantile.bin_edges, [0.0, 0.675, 1.0])
    np.testing.assert_allclose(quantile.mean_loss, [0.7, 0.2])
    with pytest.raises(ValueError, match="n_bins"):
        loss_by_confidence(confidence, loss, n_bins=0)
    with pytest.raises(ValueError, match="strategy"):
        loss_by_confidence(confidence, loss, strategy="kmeans")
    with pytest.raises(ValueError, match="differ in length"):
        loss_by_confidence(confidence, loss[:2])
    with pytest.raises(ValueError, match="y_correct and confidence differ"):
        loss_by_confidence(confidence, loss, y_correct=[1])


def test_clean_vs_attacked_orders_labels():
    y_true, y_score = clean_vs_attacked([0.3, 0.1], [0.9])
    assert y_true.tolist() == [0, 0, 1] and y_score.tolist() == [0.3, 0.1, 0.9]
    assert y_score.dtype == np.float64
