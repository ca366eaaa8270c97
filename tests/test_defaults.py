"""Each seed detector, with its default settings, against the max-softmax baseline on its home workload.

A detector is worth its defaults only if it beats the protected classifier's own
max-softmax probability (MSP, ``ConfidenceDetector``'s default) on the workload it was
designed for: AdversarialAE, VAE and DNR on non-adaptive PGD (eps 0.2) against the
benchmark's digits MLP; ModelDistillation on harmful against harmless corruptions
(noise, blur, brightness, pixelate at severities 1-5). The data, classifier, attack and
corruptions are those of ``python -m skadv benchmark --workload digits-mlp`` (seed 0);
``benchmarks/sweep_defaults.py`` is the sweep over seeds and settings behind the defaults.
"""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from skadv import (
    AdversarialAEDetector,
    ConfidenceDetector,
    DeepNeuralRejection,
    ModelDistillationDetector,
    VAEDetector,
)
from skadv._benchmark import SETTINGS, corrupted_rows, load_workload, non_adaptive_attacks
from skadv.metrics import adversarial_scores

SEED = 0


@pytest.fixture(scope="module")
def workload():
    """The digits-mlp benchmark workload: clean test rows, successful PGD rows, harmful/harmless corruptions."""
    settings = SETTINGS[False]
    data = load_workload("digits-mlp", settings, SEED, verbose=0)
    X_eval, y_eval = data.X_test[: settings["n_eval"]], data.y_test[: settings["n_eval"]]
    X_pgd = non_adaptive_attacks(data, X_eval, y_eval, settings, SEED, kinds=("pgd",))["pgd"]
    successful = data.net.predict(X_pgd) != y_eval
    X_corrupted, harmful, harmless = corrupted_rows(data, X_eval, y_eval, settings, SEED)
    assert successful.sum() > 50 and harmful.sum() > 50 and harmless.sum() > 50
    data.update(X_pgd=X_pgd[successful], X_harmful=X_corrupted[harmful], X_harmless=X_corrupted[harmless])
    return data


def _auroc(det, negatives, positives):
    scores = adversarial_scores(det, np.concatenate([negatives, positives]))
    return roc_auc_score(np.r_[np.zeros(len(negatives)), np.ones(len(positives))], scores)


def home_auroc(det, data, home):
    """AUROC on the home workload: successful PGD rows vs clean test rows, or harmful vs harmless."""
    if home == "pgd":
        return _auroc(det, data.X_test, data.X_pgd)
    return _auroc(det, data.X_harmless, data.X_harmful)


@pytest.fixture(scope="module")
def msp(workload):
    det = ConfidenceDetector(workload.model, input_shape=workload.input_shape, random_state=SEED).fit(workload.X_fit)
    return {home: home_auroc(det, workload, home) for home in ("pgd", "harmful")}


def _default_detector(name, data):
    common = {"input_shape": data.input_shape, "random_state": SEED}
    if name == "AdversarialAE":
        return AdversarialAEDetector(data.model, **common)
    if name == "VAE":
        return VAEDetector(data.model, **common)
    if name == "ModelDistillation":
        return ModelDistillationDetector(data.model, **common)
    return DeepNeuralRejection(data.model, layers=data.dnr_layers, **common)  # layers has no default


@pytest.mark.parametrize(
    "name, home",
    [("AdversarialAE", "pgd"), ("VAE", "pgd"), ("DNR", "pgd"), ("ModelDistillation", "harmful")],
)
def test_default_detector_beats_max_softmax_on_its_home_workload(workload, msp, name, home):
    det = _default_detector(name, workload).fit(workload.X_fit, workload.y_fit)
    auroc = home_auroc(det, workload, home)
    assert auroc >= msp[home], f"{name} AUROC {auroc:.3f} < MSP {msp[home]:.3f} on {home}"
