"""The end-to-end demo on the 8x8 digits behind ``python -m skadv demo``.

A CNN trained on :func:`skadv.evaluation.split_rows`'s fit rows, the MSP baseline
and the four detectors evaluated by :func:`skadv.evaluation.evaluate` (FGSM and
PGD against the classifier alone, AutoAttack against classifier and detector),
its table and report, and figures drawn from the evaluation's own rows.
"""

import os
import time

import numpy as np

from ..evaluation import evaluate, split_rows
from ._output import print_report, section

# Training lengths and evaluate's budget, for the full run and --quick. The adaptive rows dominate the
# run time: AutoAttack and the failure checks run on the first n_adaptive / n_check test rows per eps.
_SETTINGS = {
    False: {
        "classifier_epochs": 25, "ae_epochs": 30, "distillation_epochs": 30, "vae_epochs": 60, "dnr_cv": 5,
        "adaptive_eps": (0.05, 0.1, 0.2), "trace_iter": 60,
        "budget": {"n_attack": None, "n_adaptive": 100, "pgd_steps": 40, "cw_iter": 0, "severities": (),
                   "auto_iter": 50, "square_queries": 300, "eot": 4, "n_check": 40},
    },
    True: {
        "classifier_epochs": 8, "ae_epochs": 5, "distillation_epochs": 8, "vae_epochs": 15, "dnr_cv": 3,
        "adaptive_eps": (0.1, 0.2), "trace_iter": 30,
        "budget": {"n_attack": 100, "n_adaptive": 15, "pgd_steps": 10, "cw_iter": 0, "severities": (),
                   "auto_iter": 10, "square_queries": 30, "eot": 1, "n_check": 6},
    },
}
_EPS = (0.1, 0.2)
_DNR_LAYERS = ["features.1", "features.4", "classifier.2"]
# The histograms show the non-adaptive PGD rows of the table.
_HISTOGRAM_ATTACK = "pgd@0.2"


def _detectors(cnn, settings, random_state):
    """The MSP baseline and the four detectors, unfitted (evaluate fits them and fixes their thresholds)."""
    from .. import (
        AdversarialAEDetector,
        ConfidenceDetector,
        DeepNeuralRejection,
        ModelDistillationDetector,
        VAEDetector,
    )

    common = {"input_shape": (1, 8, 8), "random_state": random_state}
    return {
        # 1 - the classifier's max-softmax probability (Hendrycks & Gimpel 2017): what every detector must beat.
        "MSP": ConfidenceDetector(cnn, **common),
        "AdversarialAE": AdversarialAEDetector(cnn, epochs=settings["ae_epochs"], temperature=0.5, **common),
        "ModelDistillation": ModelDistillationDetector(cnn, epochs=settings["distillation_epochs"], **common),
        "VAE": VAEDetector(cnn, epochs=settings["vae_epochs"], **common),
        "DNR": DeepNeuralRejection(cnn, layers=_DNR_LAYERS, cv=settings["dnr_cv"], n_jobs=1, **common),
    }


def _score_histograms(report, save):
    """Every detector's adversarial score (higher = more adversarial, flagged above its threshold).

    Clean test rows against the table's successful non-adaptive PGD rows (the
    AUROC column's positives). DNR's score, bounded by its combiner's
    intercept far from the data, is drawn on a rank axis so that both sets
    stay visible.
    """
    import matplotlib.pyplot as plt

    from ..metrics import detection_threshold
    from ..plotting import ScoreHistogramDisplay

    names = list(report.observations)
    n_cols = 3
    n_rows = -(-(len(names) + 1) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.6 * n_cols, 3.7 * n_rows))
    axes = axes.ravel()
    y = report.y_test
    for ax, name in zip(axes, names):
        obs = report.observations[name]
        attacked = obs.attacks[_HISTOGRAM_ATTACK]
        successful = attacked.scores[attacked.labels != y[: attacked.labels.size]]
        clean = obs.clean.scores
        threshold = detection_threshold(report.detectors[name])
        score_name, log_scale = "adversarial score", "auto"
        if name == "DNR":
            # -(best class score) is bounded by the combiner's intercept, which the attacked rows and the
            # threshold crowd against: the rank among the rows shown spreads them out, order kept.
            pooled = np.sort(np.r_[clean, successful])
            clean, successful, threshold = (
                (np.searchsorted(pooled, v, side="left") + np.searchsorted(pooled, v, side="right")) / (2 * pooled.size)
                for v in (clean, successful, threshold)
            )
            score_name, log_scale = "adversarial score as rank among the rows shown (0-1)", False
        ScoreHistogramDisplay.from_predictions(
            clean, successful, threshold=threshold, flagged_above=True, name=name, score_name=score_name,
            log_scale=log_scale, ax=ax,
        )
        if ax.get_legend() is not None:
            ax.get_legend().remove()  # one key for all panels
        row = next(r for r in report.records if r["detector"] == name)
        auroc, tpr = row[f"{_HISTOGRAM_ATTACK}_auroc"], row[f"{_HISTOGRAM_ATTACK}_tpr"]
        ax.set_title(f"{name}: AUROC {auroc:.2f}, TPR {tpr:.2f}", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    labels = ["clean test digits", "successful PGD eps=0.2 rows (non-adaptive)", "threshold (5 % FPR): flagged above"]
    key = axes[len(names)]
    key.axis("off")
    key.legend(handles, labels, loc="center", frameon=False, fontsize=10, title="higher = more adversarial",
               title_fontsize=10)
    for ax in axes[len(names) + 1:]:
        ax.axis("off")
    fig.suptitle("Adversarial scores of the table's rows, every detector on one convention: flagged right of "
                 "its dashed threshold.\nAUROC and TPR: the table's PGD eps=0.2 columns.", fontsize=11)
    save(fig, "score_histograms.png")


def _figures(out_dir, report, settings):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..attacks import PGDLineSearch
    from ..plotting import AttackTraceDisplay, DistinctLabelsDisplay

    written = []

    def save(fig, filename, **layout):
        path = os.path.join(out_dir, filename)
        fig.tight_layout(**layout)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    _score_histograms(report, save)

    fig = report.plot_security()
    path = os.path.join(out_dir, "security_evaluation.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    X_test, y_test = report.rows.X_test, report.rows.y_test
    dnr = report.detectors["DNR"]
    trace = AttackTraceDisplay.from_attack(
        PGDLineSearch(dnr, eps=2.0, max_iter=settings["trace_iter"]), X_test, y_test,
        sample_index=0, image_shape=(8, 8), predict=dnr.predict,
    )
    middle = trace.axes_[1]
    middle.set_title("DNR's class scores\n(rejected below the dashed line)")
    middle.set_ylabel("combiner score")
    trace.figure_.suptitle("Adaptive L2 PGD with line search (eps=2) against DNR, one test digit")
    save(trace.figure_, "attack_trace_dnr.png")

    X_pgd = report.rows.attacks[_HISTOGRAM_ATTACK]
    vae_display = DistinctLabelsDisplay.from_estimator(
        report.detectors["VAE"], X_test[: len(X_pgd)], X_pgd, names=("clean", "PGD eps=0.2 (non-adaptive)")
    )
    vae_display.ax_.set_title(f"VAE: distinct labels over sampled reconstructions\n{len(X_pgd)} clean test rows "
                              "and their PGD eps=0.2 copies (the table's)")
    save(vae_display.figure_, "vae_distinct_labels.png")
    return written


def run_demo(out_dir="skadv_demo", quick=False, random_state=0):
    """Train a classifier on digits, evaluate the MSP baseline and skadv's four detectors, and draw figures.

    Prints the evaluation's tables (clean cost; per attack the evasion rate,
    TPR and AUROC at the fixed threshold, with bootstrap intervals; the
    attack-failure checks of the adaptive attack) and writes the report
    (``evaluation.csv``, ``.md``, ``.png``, ``.html``) and PNG figures into
    ``out_dir``. Returns the :class:`~skadv.evaluation.EvaluationReport`.
    """
    from ..datasets import load_digits8, make_digits_classifier

    settings = _SETTINGS[bool(quick)]
    start = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    X, y = load_digits8()
    split = split_rows(y, random_state=random_state)

    section(f"classifier: small CNN on the 8x8 digits, trained through skorch ({len(split.fit)} rows)")
    net = make_digits_classifier(X[split.fit], y[split.fit], epochs=settings["classifier_epochs"],
                                 random_state=random_state, verbose=True)
    cnn = net.module_
    print(f"clean test accuracy: {np.mean(net.predict(X[split.test]) == y[split.test]):.3f}")

    section(f"evaluation: detectors fitted on {len(split.fit)} rows, thresholds at 5 % FPR on "
            f"{len(split.threshold)} held-out rows, attacks on the {len(split.test)} test rows (progress on stderr)")
    report = evaluate(cnn, X, y, detectors=_detectors(cnn, settings, random_state), input_shape=(1, 8, 8),
                      eps=_EPS, adaptive_eps=settings["adaptive_eps"], budget=settings["budget"],
                      random_state=random_state, return_rows=True, verbose=1)
    section("results at the fixed thresholds (5 % FPR on held-out clean rows)")
    print_report(report)

    section("attack-failure checks of the adaptive attack (Pintor et al. 2022)")
    for name, by_eps in report.checks.items():
        for eps, by_seed in by_eps.items():
            for found in by_seed.values():
                for check_name, check in found.items():
                    value = check.value if isinstance(check.value, (int, float)) else float("nan")
                    print(f"{name:18s} eps={eps:5s} {check_name:13s} {'FIRED' if check.fired else 'ok':5s} "
                          f"value {value:7.3f}")
                    if check.fired:
                        print(f"{'':18s} {check.message}")

    section("figures and report")
    paths = report.save(out_dir, title="skadv demo (8x8 digits, CNN)")
    paths += _figures(out_dir, report, settings)
    for path in paths:
        print(path)
    print(f"\nfinished in {time.perf_counter() - start:.0f} s")
    return report
