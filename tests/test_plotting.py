"""Tests of skadv.plotting: every display renders to PNG under Agg."""

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _attack_helpers import digits_data, digits_mlp  # noqa: E402
from sklearn.metrics import RocCurveDisplay  # noqa: E402

from skadv import DeepNeuralRejection, ModelDistillationDetector  # noqa: E402
from skadv.attacks import PGD, PGDLineSearch  # noqa: E402
from skadv.metrics import detection_auroc, security_evaluation  # noqa: E402
from skadv.plotting import (  # noqa: E402
    AttackTraceDisplay,
    ScoreHistogramDisplay,
    SecurityEvaluationDisplay,
    plot_detection_roc,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_bytes(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


@pytest.fixture(scope="module")
def setup():
    (X_train, y_train), (X, y) = digits_data(n_train=600, n_test=60)
    mlp = digits_mlp(X_train, y_train, n_steps=100)
    det = ModelDistillationDetector(mlp, epochs=5, batch_size=64, lr=3e-3, random_state=0).fit(X_train)
    X_adv = PGD(det, eps=0.1, step_size=0.02, max_iter=10, random_state=0).generate(X, y)
    return mlp, det, X, y, X_adv


def test_security_evaluation_display(setup):
    mlp, det, X, y, _ = setup
    disp = SecurityEvaluationDisplay.from_estimator(
        det, PGD, X, y, [0.0, 0.05, 0.1], step_size=0.02, max_iter=5, random_state=0
    )
    res = security_evaluation(det, PGD, X, y, [0.0, 0.05, 0.1], step_size=0.02, max_iter=5, random_state=0)
    np.testing.assert_allclose(disp.lines_["accuracy"].get_ydata(), res.accuracy)
    np.testing.assert_allclose(disp.lines_["detection_rate"].get_ydata(), res.detection_rate)
    np.testing.assert_allclose(disp.lines_["accuracy"].get_xdata(), [0.0, 0.05, 0.1])
    assert "adaptive" in disp.ax_.get_title()
    assert disp.ax_.get_legend() is not None
    assert _png_bytes(disp.figure_).startswith(PNG_MAGIC)

    # A plain model has no detection curve; drawing on a given axes.
    fig, ax = plt.subplots()
    disp = SecurityEvaluationDisplay.from_estimator(mlp, PGD, X, y, [0.0, 0.1], max_iter=3, ax=ax, random_state=0)
    assert disp.ax_ is ax and "detection_rate" not in disp.lines_
    assert _png_bytes(fig).startswith(PNG_MAGIC)


def test_score_histogram_display(setup):
    _, det, X, _, X_adv = setup
    disp = ScoreHistogramDisplay.from_estimator(det, X, X_adv, bins=12)
    counts_clean = disp.hist_clean_[0]
    assert counts_clean.shape == (12,)
    assert disp.threshold_line_.get_xdata()[0] == pytest.approx(det.threshold_)
    assert _png_bytes(disp.figure_).startswith(PNG_MAGIC)

    rng = np.random.RandomState(0)
    disp = ScoreHistogramDisplay.from_predictions(
        rng.gamma(2, size=50), rng.gamma(5, size=40), density=False, log_scale=True, bins=10
    )
    assert disp.hist_clean_[0].sum() == 50 and disp.hist_attacked_[0].sum() == 40
    assert disp.threshold_line_ is None
    assert _png_bytes(disp.figure_).startswith(PNG_MAGIC)


def test_score_histogram_log_scale_density_is_per_decade():
    clean = np.array([1.0, 3.0, 20.0, 50.0, 2000.0])
    attacked = np.array([30.0, 200.0, 500.0, 10000.0])
    disp = ScoreHistogramDisplay.from_predictions(clean, attacked, log_scale=True, bins=4)
    # Bins [1, 10), [10, 100), [100, 1000), [1000, 10000], one decade each: a bar is the
    # share of the set's scores in it per decade.
    heights_clean, edges, _ = disp.hist_clean_
    np.testing.assert_allclose(edges, [1, 10, 100, 1000, 10000])
    np.testing.assert_allclose(heights_clean, [2 / 5, 2 / 5, 0, 1 / 5])
    np.testing.assert_allclose(disp.hist_attacked_[0], [0, 1 / 4, 2 / 4, 1 / 4])
    assert disp.ax_.get_xscale() == "log" and disp.ax_.get_ylabel() == "density per decade"
    plt.close(disp.figure_)

    # Two bins of two decades each: heights halve, areas (height x decades) still sum to 1.
    disp = ScoreHistogramDisplay.from_predictions(clean, attacked, log_scale=True, bins=2)
    np.testing.assert_allclose(disp.hist_clean_[0], [4 / 5 / 2, 1 / 5 / 2])
    np.testing.assert_allclose(disp.hist_attacked_[0], [1 / 4 / 2, 3 / 4 / 2])
    plt.close(disp.figure_)

    # Linear axis: matplotlib's density per unit of score; counts unchanged.
    disp = ScoreHistogramDisplay.from_predictions([0.0, 1.0, 1.5, 4.0], [3.0, 4.0], bins=2)
    np.testing.assert_allclose(disp.hist_clean_[0], [3 / 4 / 2, 1 / 4 / 2])
    assert disp.ax_.get_ylabel() == "density"
    plt.close(disp.figure_)
    with pytest.raises(ValueError, match="positive"):
        ScoreHistogramDisplay.from_predictions([0.0, 1.0], [2.0], log_scale=True)


def test_detection_roc_reuses_sklearn_display(setup):
    _, det, X, _, X_adv = setup
    disp = plot_detection_roc(det, X, X_adv)
    assert isinstance(disp, RocCurveDisplay)
    assert disp.roc_auc == pytest.approx(detection_auroc(det.adversarial_score(X), det.adversarial_score(X_adv)))
    assert _png_bytes(disp.figure_).startswith(PNG_MAGIC)
    disp = plot_detection_roc(scores_clean=[0.1, 0.2], scores_attacked=[0.3, 0.05], name="toy")
    assert disp.roc_auc == pytest.approx(0.5)
    with pytest.raises(ValueError, match="X_clean"):
        plot_detection_roc(det, X)


def test_attack_trace_display(setup):
    _, det, X, y, _ = setup
    attack = PGDLineSearch(det, eps=1.0, max_iter=10)
    disp = AttackTraceDisplay.from_attack(attack, X, y, sample_index=3)
    assert not hasattr(attack, "trace_") and attack.trace is False  # the user's attack is untouched
    assert len(disp.axes_) == 4
    loss_line = disp.axes_[0].get_lines()[0]
    assert len(loss_line.get_ydata()) == disp.trace["n_iter"]
    # Adaptive attack: true-class, best-other and rejected confidences.
    assert len(disp.axes_[1].get_lines()) == 3
    assert disp.axes_[2].get_images()[0].get_array().shape == (8, 8)
    np.testing.assert_allclose(disp.axes_[2].get_images()[0].get_array().ravel(), X[3])
    assert _png_bytes(disp.figure_).startswith(PNG_MAGIC)

    # From a stored trace, without images, on given axes.
    traced = PGD(det, eps=0.1, max_iter=4, random_state=0, trace=True)
    X_adv = traced.generate(X[:5], y[:5])
    fig, axes = plt.subplots(1, 2)
    disp = AttackTraceDisplay(trace=traced.trace_, sample_index=1).plot(ax=axes)
    assert disp.figure_ is fig
    np.testing.assert_allclose(disp.axes_[0].get_lines()[0].get_ydata(), traced.trace_.loss[:, 1])
    assert _png_bytes(fig).startswith(PNG_MAGIC)
    disp = AttackTraceDisplay.from_trace(traced.trace_, X[:5], X_adv, sample_index=2, attack_name="PGD")
    assert _png_bytes(disp.figure_).startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="axes"):
        AttackTraceDisplay(trace=traced.trace_).plot(ax=axes[:1])


def test_attack_trace_display_shows_raw_scores_of_dnr(setup):
    """DNR's adaptive logits are raw SVM scores plus the threshold: their softmax is flat."""
    mlp, _, X, y, _ = setup
    (X_train, y_train), _ = digits_data(n_train=300, n_test=0)
    dnr = DeepNeuralRejection(mlp, layers=["1", "2"], cv=3, random_state=0).fit(X_train, y_train)
    dnr.set_params(threshold=dnr.compute_threshold(X, 0.1))
    attack = PGDLineSearch(dnr, eps=2.0, step_size=0.1, max_iter=15, trace=True)
    X_adv = attack.generate(X[:10], y[:10])
    trace = attack.trace_
    assert trace.scores_are_logits is False
    # The trace's raw scores are DNR's decision values; the reject column is the threshold.
    decision = dnr.decision_function(X[:10])
    # (To float32 rounding: the network's features depend on the batch layout and threads.)
    np.testing.assert_allclose(trace.true_score[0], decision[np.arange(10), y[:10]], rtol=1e-5)
    np.testing.assert_allclose(trace.reject_score, dnr.threshold)

    # The digit the attack moves most: its softmax confidence hardly moves, its score does.
    i = int(np.argmax(np.ptp(trace.true_score, axis=0)))
    assert np.ptp(trace.true_score[:, i]) > 0.3 and np.ptp(trace.true_confidence[:, i]) < 0.15

    disp = AttackTraceDisplay.from_trace(trace, X[:10], X_adv, sample_index=i)
    assert disp.quantity_ == "score" and disp.axes_[1].get_ylabel() == "score"
    true_line, other_line, reject_line = disp.axes_[1].get_lines()
    np.testing.assert_allclose(true_line.get_ydata(), trace.true_score[:, i])
    np.testing.assert_allclose(other_line.get_ydata(), trace.max_other_score[:, i])
    np.testing.assert_allclose(reject_line.get_ydata(), dnr.threshold)
    assert reject_line.get_label() == "reject threshold"
    assert _png_bytes(disp.figure_).startswith(PNG_MAGIC)

    # Confidences on request; a plain model's trace shows them by default.
    disp = AttackTraceDisplay(trace=trace, sample_index=i, quantity="confidence").plot()
    np.testing.assert_allclose(disp.axes_[1].get_lines()[0].get_ydata(), trace.true_confidence[:, i])
    assert disp.axes_[1].get_ylim() == (-0.02, 1.02)
    plt.close(disp.figure_)
    disp = AttackTraceDisplay.from_attack(PGD(mlp, eps=0.1, max_iter=3, random_state=0), X, y)
    assert disp.quantity_ == "confidence"
    plt.close(disp.figure_)
    with pytest.raises(ValueError, match="quantity"):
        AttackTraceDisplay(trace=trace, quantity="proba").plot()
    old_trace = {k: v for k, v in trace.items() if not k.endswith("_score")}
    with pytest.raises(ValueError, match="raw scores"):
        AttackTraceDisplay(trace=old_trace, quantity="score").plot()
    plt.close("all")
