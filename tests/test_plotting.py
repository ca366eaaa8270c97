"""Tests of skadv.plotting: every display renders to PNG under Agg."""

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from sklearn.metrics import RocCurveDisplay

from skadv import DeepNeuralRejection, ModelDistillationDetector
from skadv.attacks import PGD, PGDLineSearch
from skadv.metrics import detection_auroc, security_evaluation
from skadv.plotting import (
    AttackTraceDisplay,
    DistinctLabelsDisplay,
    ReconstructionCalibrationDisplay,
    ScoreHistogramDisplay,
    SecurityEvaluationDisplay,
    plot_detection_roc,
)

from _attack_helpers import digits_data, train_mlp

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_bytes(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


@pytest.fixture(scope="module")
def setup():
    (X_train, y_train), (X, y) = digits_data(n_train=600, n_test=60)
    mlp = train_mlp(X_train, y_train, n_steps=100)
    det = ModelDistillationDetector(mlp, epochs=5, batch_size=64, lr=3e-3, random_state=0).fit(X_train)
    X_adv = PGD(det, eps=0.1, step_size=0.02, max_iter=10, random_state=0).generate(X, y)
    return mlp, det, X, y, X_adv


@pytest.fixture(scope="module")
def dnr(setup):
    """DNR on the setup's MLP, rejecting 10 % of the setup's clean rows."""
    mlp, _, X, _, _ = setup
    (X_train, y_train), _ = digits_data(n_train=300, n_test=0)
    dnr = DeepNeuralRejection(mlp, layers=["1", "2"], cv=3, random_state=0).fit(X_train, y_train)
    return dnr.set_params(threshold=dnr.compute_threshold(X, 0.1))


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


def test_attack_trace_display_shows_raw_scores_of_dnr(setup, dnr):
    """DNR's adaptive logits are raw SVM scores plus the threshold: their softmax is flat."""
    mlp, _, X, y, _ = setup
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


# ----------------------------------------------------------------------------- data drawn, by hand


def _legend_bottom_in_data(ax):
    """The y (data coordinates) of the legend's lower edge."""
    bbox = ax.get_legend().get_window_extent()
    return ax.transData.inverted().transform((bbox.x0, bbox.y0))[1]


def test_security_evaluation_display_draws_the_given_curves_under_the_legend():
    eps = [0.0, 0.1, 0.3]
    disp = SecurityEvaluationDisplay(
        eps_values=eps, accuracy=[0.95, 0.4, 0.05], detection_rate=[np.nan] * 3,
        accuracy_with_rejection=[0.9, 0.7, 0.6], estimator_name="det",
    ).plot()
    assert sorted(disp.lines_) == ["accuracy", "accuracy_with_rejection"]  # an all-NaN curve is not drawn
    np.testing.assert_allclose(disp.lines_["accuracy"].get_xdata(), eps)
    np.testing.assert_allclose(disp.lines_["accuracy"].get_ydata(), [0.95, 0.4, 0.05])
    np.testing.assert_allclose(disp.lines_["accuracy_with_rejection"].get_ydata(), [0.9, 0.7, 0.6])
    assert disp.lines_["accuracy"].get_label() == "det: accuracy (no defense)"
    # The legend has its own band above every rate (at most 1), so it hides no point.
    assert _legend_bottom_in_data(disp.ax_) > 1.02
    assert disp.ax_.get_ylim()[0] == -0.02 and disp.ax_.get_yticks().max() == 1.0
    plt.close(disp.figure_)
    with pytest.raises(TypeError, match="takes 1 positional argument but 3 were given"):
        SecurityEvaluationDisplay(eps, [0.9, 0.5, 0.1])  # keyword-only


def test_security_evaluation_display_evasion_curve_and_shared_legend():
    eps = [0.0, 0.1, 0.3]
    result = {
        "eps_values": eps, "accuracy": [0.95, 0.4, 0.05], "detection_rate": [0.05, 0.3, 0.2],
        "accuracy_with_rejection": [0.9, 0.7, 0.25], "evasion_rate": [0.0, 0.3, 0.75],
    }
    fig, axes = plt.subplots(1, 2)
    for ax in axes:
        disp = SecurityEvaluationDisplay.from_evaluation(result, ax=ax, legend=False)
        # No legend on the panel: nothing covers a curve, and the rates keep the whole axis.
        assert ax.get_legend() is None and ax.get_ylim() == (-0.02, 1.02)
    np.testing.assert_allclose(disp.lines_["evasion_rate"].get_ydata(), [0.0, 0.3, 0.75])
    handles, labels = axes[0].get_legend_handles_labels()
    assert labels == ["accuracy (no defense)", "accuracy with rejection", "detection rate", "evasion rate"]
    # The demo's figure legend: one band below the panels, outside every axes.
    legend = fig.legend(handles, labels, loc="lower center", ncol=4)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.canvas.draw()
    legend_box = legend.get_window_extent()
    assert all(legend_box.y1 <= ax.get_window_extent().y0 for ax in axes)
    plt.close(fig)
    # The default draws a legend per axes, above the curves.
    disp = SecurityEvaluationDisplay.from_evaluation(result, name="det")
    assert disp.ax_.get_legend() is not None and _legend_bottom_in_data(disp.ax_) > 1.02
    plt.close(disp.figure_)


def test_score_histogram_auto_log_scale_and_legend():
    clean = np.array([1e-4, 2e-4, 1.5e-3, 0.015, 0.02])
    attacked = np.array([0.05, 0.5, 1.0])
    # Positive scores over four decades: "auto" takes the log axis (bins one decade wide here).
    disp = ScoreHistogramDisplay.from_predictions(clean, attacked, threshold=0.03, log_scale="auto", bins=4)
    assert disp.log_scale_ and disp.ax_.get_xscale() == "log"
    np.testing.assert_allclose(disp.hist_clean_[1], [1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    np.testing.assert_allclose(disp.hist_clean_[0], [2 / 5, 1 / 5, 2 / 5, 0])
    np.testing.assert_allclose(disp.hist_attacked_[0], [0, 0, 1 / 3, 2 / 3])
    assert disp.threshold_line_.get_xdata()[0] == 0.03
    assert _legend_bottom_in_data(disp.ax_) > 2 / 3  # above the tallest bar
    plt.close(disp.figure_)
    # Less than two decades, a non-positive score or threshold: linear.
    for scores, threshold in [(([1.0, 2.0], [50.0]), None), (([0.0, 2.0], [500.0]), None), (([1.0], [500.0]), -1.0)]:
        disp = ScoreHistogramDisplay.from_predictions(*scores, threshold=threshold, log_scale="auto")
        assert not disp.log_scale_ and disp.ax_.get_xscale() == "linear"
        plt.close(disp.figure_)
    with pytest.raises(ValueError, match="log_scale"):
        ScoreHistogramDisplay.from_predictions(clean, attacked, log_scale="yes")


def test_score_histogram_of_dnr_draws_its_threshold_with_the_sign_it_has_everywhere(setup, dnr):
    _, _, X, y, X_adv = setup
    disp = ScoreHistogramDisplay.from_estimator(dnr, X, X_adv, density=False, bins=15)
    # DNR has no adversarial_score: the axis is its score_samples (best class score), rejected below
    # its threshold, which is drawn at the value of its `threshold` parameter, not at minus it.
    scores_clean, scores_attacked = dnr.score_samples(X), dnr.score_samples(X_adv)
    np.testing.assert_allclose(disp.scores_clean, scores_clean)
    np.testing.assert_allclose(disp.hist_attacked_[0], np.histogram(scores_attacked, bins=disp.hist_attacked_[1])[0])
    threshold = disp.threshold_line_.get_xdata()[0]
    assert threshold == pytest.approx(dnr.threshold)
    assert disp.flagged_above is False and disp.threshold_line_.get_label() == "threshold (flagged below)"
    for X_part, scores in [(X, scores_clean), (X_adv, scores_attacked)]:
        np.testing.assert_array_equal(scores < threshold, dnr.predict(X_part) == -1)
    assert "score_samples" in disp.ax_.get_xlabel()
    plt.close(disp.figure_)
    # Its detector view flags the same rows at the same threshold.
    disp = ScoreHistogramDisplay.from_estimator(dnr.as_detector(), X, X_adv)
    assert disp.threshold_line_.get_xdata()[0] == pytest.approx(dnr.threshold)
    plt.close(disp.figure_)
    # The attack trace's class scores draw the same threshold at the same value.
    trace = AttackTraceDisplay.from_attack(PGDLineSearch(dnr, eps=1.0, max_iter=3), X, y, sample_index=0)
    reject_line = trace.axes_[1].get_lines()[2]
    np.testing.assert_allclose(reject_line.get_ydata(), threshold)
    plt.close(trace.figure_)
    # A detector's adversarial score is flagged above its threshold.
    det_disp = ScoreHistogramDisplay.from_estimator(setup[1], X, X_adv)
    assert det_disp.flagged_above and det_disp.threshold_line_.get_label() == "threshold (flagged above)"
    assert det_disp.threshold_line_.get_xdata()[0] == pytest.approx(setup[1].threshold_)
    plt.close(det_disp.figure_)


def test_attack_trace_images_carry_true_and_predicted_labels(setup, dnr):
    _, _, X, y, _ = setup
    attack = PGDLineSearch(dnr, eps=2.0, max_iter=10)
    disp = AttackTraceDisplay.from_attack(attack, X, y, sample_index=4, predict=dnr.predict)
    x_adv = disp.x_adversarial[None]
    predicted = dnr.predict(X[4:5])[0]
    predicted_adv = dnr.predict(x_adv)[0]
    original_title, adversarial_title = disp.axes_[2].get_title(), disp.axes_[3].get_title()
    assert f"true: {y[4]}" in original_title and f"predicted: {predicted}" in original_title
    expected = "predicted: rejected" if predicted_adv == -1 else f"predicted: {predicted_adv}"
    assert expected in adversarial_title and "true:" not in adversarial_title
    plt.close(disp.figure_)
    # Given labels; -1 reads "rejected"; without labels the titles are the panel names.
    disp = AttackTraceDisplay(
        trace=_trace_of(dnr, X, y), x_original=X[0], x_adversarial=X[0], y_true=7, y_pred=7, y_pred_adversarial=-1
    ).plot()
    assert disp.axes_[2].get_title() == "original\ntrue: 7\npredicted: 7"
    assert disp.axes_[3].get_title() == "adversarial\npredicted: rejected"
    plt.close(disp.figure_)
    disp = AttackTraceDisplay(trace=_trace_of(dnr, X, y), x_original=X[0], x_adversarial=X[0]).plot()
    assert [disp.axes_[2].get_title(), disp.axes_[3].get_title()] == ["original", "adversarial"]
    plt.close(disp.figure_)


def _trace_of(target, X, y):
    attack = PGD(target, eps=0.1, max_iter=2, random_state=0, trace=True)
    attack.generate(X[:1], y[:1])
    return attack.trace_


def test_distinct_labels_display_bars():
    disp = DistinctLabelsDisplay.from_predictions([1, 1, 2, 1], [3, 2, 3], n_samples=3, names=("a", "b"))
    # Shares per count 1..3: a = [3/4, 1/4, 0], b = [0, 1/3, 2/3].
    expected = [[3 / 4, 1 / 4, 0], [0, 1 / 3, 2 / 3]]
    np.testing.assert_allclose(disp.frequencies, expected)
    for bars, heights, offset in zip(disp.bars_, expected, (-0.2, 0.2)):
        np.testing.assert_allclose([b.get_height() for b in bars], heights)
        np.testing.assert_allclose([b.get_x() + b.get_width() / 2 for b in bars], np.arange(1, 4) + offset)
    assert [t.get_text() for t in disp.ax_.get_legend().get_texts()] == ["a", "b"]
    assert _legend_bottom_in_data(disp.ax_) > 3 / 4
    plt.close(disp.figure_)
    with pytest.raises(ValueError, match="between 1 and n_samples=3"):
        DistinctLabelsDisplay(counts=[[4]], n_samples=3, names=("a",)).plot()


def test_reconstruction_calibration_display_bars():
    confidence = [0.3, 0.55, 0.9, 0.95, 0.45]
    loss = [0.8, 0.5, 0.1, 0.2, 0.6]
    disp = ReconstructionCalibrationDisplay.from_predictions(confidence, loss, n_bins=4)
    # Bins [0, .25) empty, [.25, .5): 0.8, 0.6; [.5, .75): 0.5; [.75, 1]: 0.1, 0.2.
    np.testing.assert_allclose([b.get_height() for b in disp.bars_], [0.7, 0.5, 0.15])
    np.testing.assert_allclose([b.get_x() for b in disp.bars_], [0.25, 0.5, 0.75])
    np.testing.assert_allclose([b.get_width() for b in disp.bars_], [0.25] * 3)
    labels = [t.get_text() for t in disp.ax_.texts]
    assert labels == ["2", "1", "2"]
    # The tallest count label (above its error bar) stays inside the axes.
    assert disp.ax_.get_ylim()[1] > 0.7 + 0.1
    np.testing.assert_allclose(disp.analysis.std_loss[1:], [0.1, 0.0, 0.05])
    plt.close(disp.figure_)


def test_displays_check_matplotlib(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"ScoreHistogramDisplay\.from_predictions requires matplotlib"):
        ScoreHistogramDisplay.from_predictions([0.1], [0.2])
    with pytest.raises(ImportError, match=r"DistinctLabelsDisplay\.plot requires matplotlib"):
        DistinctLabelsDisplay(counts=[[1]], n_samples=1, names=("a",)).plot()


@pytest.mark.parametrize(
    "name, package",
    [
        ("DistinctLabelsDisplay", "plotting"),
        ("ReconstructionCalibrationDisplay", "plotting"),
        ("harmfulness", "metrics"),
        ("ks_drift_test", "metrics"),
    ],
)
def test_moved_names_warn_at_their_old_path(name, package):
    import skadv

    with pytest.warns(DeprecationWarning, match=rf"skadv\.{name} moved to skadv\.{package}\.{name}"):
        moved = getattr(skadv, name)
    assert moved is getattr(getattr(skadv, package), name)
    assert name not in skadv.__all__
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        skadv.no_such_name  # noqa: B018
