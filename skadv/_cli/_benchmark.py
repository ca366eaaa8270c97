"""The detection benchmark behind ``python -m skadv benchmark``: :func:`skadv.evaluation.evaluate` on digits.

Rows: the four seed detectors and the three baselines, with the demo's
training lengths, next to one classifier (:data:`WORKLOADS`). The classifier
is trained on the rows :func:`~skadv.evaluation.split_rows` gives the
detectors, so the threshold and test rows are unseen by both. The table is
evaluate's: every rate with its bootstrap interval, FGSM and PGD at ε 0.1 and
0.2, C&W-L2, harmful corruptions, AutoAttack at ε 0.2 with its failure checks,
fit and score times. The full digits28-cnn run uses fewer rows, epochs and
attacked rows than the 8x8 workloads (``_DIGITS28_FULL``), so that it stays
practical on two cores.
"""

import time

import numpy as np
import torch
from torch import nn

from ..evaluation import evaluate, split_rows
from ._main import WORKLOADS
from ._output import print_report, section

SEED_DETECTORS = ("AdversarialAE", "ModelDistillation", "VAE", "DNR")
BASELINES = ("MSP", "Mahalanobis", "FeatureSqueezing")
SMOKE_TEST = "--quick: SMOKE TEST ONLY (few epochs, few rows, weak attacks); not benchmark numbers"
EPS, ADAPTIVE_EPS = (0.1, 0.2), (0.2,)

# Training lengths of the full run and of --quick, and evaluate's budget for each. The adaptive rows dominate
# the run time: AutoAttack runs on the first n_adaptive test rows, the failure checks on the first n_check.
SETTINGS = {
    False: {
        "classifier_epochs": 25, "ae_epochs": 30, "distillation_epochs": 30, "vae_epochs": 60, "dnr_cv": 5,
        "n_digits28": 6000,
        "budget": {"n_attack": 300, "n_adaptive": 200, "pgd_steps": 40, "cw_iter": 100, "cw_search": 5,
                   "cw_const": 1e-2, "severities": (1, 2, 3, 4, 5), "auto_iter": 50, "square_queries": 300,
                   "eot": 4, "n_check": 40},
    },
    True: {
        "classifier_epochs": 8, "ae_epochs": 5, "distillation_epochs": 8, "vae_epochs": 15, "dnr_cv": 3,
        "n_digits28": 1500,
        "budget": {"n_attack": 80, "n_adaptive": 15, "pgd_steps": 10, "cw_iter": 20, "cw_search": 2,
                   "cw_const": 1.0, "severities": (2, 4), "auto_iter": 5, "square_queries": 20, "eot": 1,
                   "n_check": 8},
    },
}
# A 28x28 row costs about 12 times an 8x8 one in every convolution (training, scoring, each
# attack step): the full digits28-cnn run uses fewer rows, epochs and attacked rows.
_DIGITS28_FULL = {
    "n_digits28": 3000, "classifier_epochs": 15, "ae_epochs": 15, "distillation_epochs": 20, "vae_epochs": 30,
    "dnr_cv": 3, "budget": {**SETTINGS[False]["budget"], "n_attack": 200, "n_adaptive": 100},
}


def settings_for(workload, quick):
    settings = dict(SETTINGS[bool(quick)])
    if workload == "digits28-cnn" and not quick:
        settings.update(_DIGITS28_FULL)
    return settings


def load_workload(workload, settings, random_state, verbose):
    """All rows, the rows the classifier trains on (evaluate's fit rows), and the trained classifier."""
    from ..datasets import load_digits8, load_digits28, make_digits_classifier

    if workload == "digits28-cnn":
        X, y = load_digits28(settings["n_digits28"], random_state=random_state)
        side = 28
    else:
        X, y = load_digits8()
        side = 8
    fit = split_rows(y, random_state=random_state).fit
    if workload == "digits-mlp":
        with torch.random.fork_rng():
            torch.manual_seed(random_state)
            # 64-128-10 behind a Flatten, so that it takes images (the image squeezers, the AE) too.
            module = nn.Sequential(nn.Flatten(), nn.Linear(side * side, 128), nn.ReLU(), nn.Linear(128, 10))
        dnr_layers = ["2", "3"]
    else:
        module = None
        dnr_layers = ["features.1", "features.4", "classifier.2"]
    net = make_digits_classifier(X[fit], y[fit], epochs=settings["classifier_epochs"], random_state=random_state,
                                 module=module, verbose=verbose >= 2)
    return X, y, net, (1, side, side), dnr_layers


def make_detectors(model, input_shape, dnr_layers, settings, random_state):
    """The seven detectors, unfitted, with the benchmark's training lengths."""
    from .. import (
        AdversarialAEDetector,
        ConfidenceDetector,
        DeepNeuralRejection,
        FeatureSqueezingDetector,
        MahalanobisDetector,
        ModelDistillationDetector,
        VAEDetector,
    )

    common = {"input_shape": input_shape, "random_state": random_state}
    return {
        "AdversarialAE": AdversarialAEDetector(model, epochs=settings["ae_epochs"], temperature=0.5, **common),
        "ModelDistillation": ModelDistillationDetector(model, epochs=settings["distillation_epochs"], **common),
        "VAE": VAEDetector(model, epochs=settings["vae_epochs"], **common),
        "DNR": DeepNeuralRejection(model, layers=dnr_layers, cv=settings["dnr_cv"], n_jobs=1, **common),
        "MSP": ConfidenceDetector(model, **common),
        "Mahalanobis": MahalanobisDetector(model, **common),
        "FeatureSqueezing": FeatureSqueezingDetector(model, **common),
    }


def home_rows(workload, random_state, quick=False):
    """The benchmark's rows for measuring one detector setting after another (e.g. a sweep of defaults).

    The workload's trained classifier and rows, and what :func:`evaluate` attacks
    and corrupts on them (no adaptive attack): ``X_fit``, ``y_fit`` (the rows
    detectors fit on), ``X_test``, ``y_test`` (every clean test row), ``X_pgd``
    (non-adaptive PGD at ε 0.2 on the first test rows, ``y_eval`` their labels),
    ``corrupted`` (Bunch of ``X``, ``harmful``, ``harmless``), ``net``,
    ``model``, ``input_shape``, ``dnr_layers``, ``seed`` and ``report`` (MSP's
    evaluation on these rows).
    """
    from sklearn.utils import Bunch

    settings = settings_for(workload, quick)
    X, y, net, input_shape, dnr_layers = load_workload(workload, settings, random_state, verbose=0)
    split = split_rows(y, random_state=random_state)
    report = evaluate(net.module_, X, y, detectors=[], input_shape=input_shape, eps=EPS,
                      budget={**settings["budget"], "n_adaptive": 0}, random_state=random_state,
                      return_rows=True)
    rows = report.rows
    X_pgd = rows.attacks["pgd@0.2"]
    return Bunch(X_fit=X[split.fit], y_fit=y[split.fit], X_test=rows.X_test, y_test=rows.y_test, X_pgd=X_pgd,
                 y_eval=rows.y_test[: len(X_pgd)], corrupted=rows.corrupted, net=net, model=net.module_,
                 input_shape=input_shape, dnr_layers=dnr_layers, seed=random_state, report=report)


def run_benchmark(workload="digits-cnn", *, quick=False, out_dir="skadv_benchmark", random_state=0, verbose=1,
                  fmt="text"):
    """Fit the seven detectors on one workload, evaluate them, print the table and write the report files.

    Parameters
    ----------
    workload : {"digits-mlp", "digits-cnn", "digits28-cnn"}
    quick : bool
        Small settings for a smoke test; every output says its numbers are not a benchmark.
    out_dir : str
        Folder for ``benchmark_<workload>.csv``, ``.md``, ``.png`` and ``.html``.
    random_state : int
    verbose : int
        0: the table only; 1: stage lines and progress bars (stderr); 2: also the classifier's epochs.
    fmt : {"text", "markdown", "csv"}
        The table printed (the files hold every column).

    Returns
    -------
    report : skadv.evaluation.EvaluationReport
    """
    if workload not in WORKLOADS:
        raise ValueError(f"Unknown workload {workload!r}; choose one of {', '.join(WORKLOADS)}.")
    settings = settings_for(workload, quick)
    start = time.perf_counter()
    if quick:
        print(f"NOTE {SMOKE_TEST}.", flush=True)
    if verbose:
        section(f"workload {workload}: training the classifier")
    X, y, net, input_shape, dnr_layers = load_workload(workload, settings, random_state, verbose)
    test = split_rows(y, random_state=random_state).test
    if verbose:
        print(f"clean test accuracy: {np.mean(net.predict(X[test]) == y[test]):.3f}", flush=True)
        section("evaluation: fit, thresholds at 5 % FPR on held-out rows, attacks (progress on stderr)")
    detectors = make_detectors(net.module_, input_shape, dnr_layers, settings, random_state)
    report = evaluate(net.module_, X, y, detectors=detectors, input_shape=input_shape, eps=EPS,
                      adaptive_eps=ADAPTIVE_EPS, budget=settings["budget"], random_state=random_state,
                      verbose=verbose)
    section(f"benchmark on {workload}" + (" -- SMOKE TEST ONLY (--quick)" if quick else ""))
    print_report(report, fmt)
    command = f"python -m skadv benchmark --workload {workload}" + (" --quick" if quick else "")
    note = f"{SMOKE_TEST}. " if quick else ""
    paths = report.save(out_dir, stem=f"benchmark_{workload}", title=f"skadv detection benchmark: {workload}",
                        note=f"{note}Made by `{command}`.", warning=quick)
    section("files (every column)")
    for path in paths:
        print(path)
    print(f"\nfinished in {time.perf_counter() - start:.0f} s")
    return report
