"""Each seed detector, with its default settings, against the max-softmax baseline on its home workload.

A detector is worth its defaults only if it beats the protected classifier's own
max-softmax probability (MSP, ``ConfidenceDetector``'s default) on the workload it was
designed for: AdversarialAE, VAE and DNR on non-adaptive PGD (eps 0.2) against the
benchmark's digits MLP; ModelDistillation on harmful against harmless corruptions
(noise, blur, brightness, pixelate at severities 1-5). The data, classifier, attack and
corruptions are those of ``python -m skadv benchmark --workload digits-mlp`` (seed 0);
``benchmarks/sweep_defaults.py`` is the sweep over seeds and settings behind the defaults. On the
demo CNN, ModelDistillation only ties MSP on corruptions (asserted within 0.03, an expected
failure when below; stated in the README).
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
from skadv._cli._benchmark import home_rows
from skadv.metrics import adversarial_scores


def _workload(name, seed):
    """A benchmark workload: clean test rows, successful PGD rows, harmful/harmless corruptions, MSP's AUROCs."""
    data = home_rows(name, seed)
    successful = data.net.predict(data.X_pgd) != data.y_eval
    corrupted = data.corrupted
    assert successful.sum() > 50 and corrupted.harmful.sum() > 50 and corrupted.harmless.sum() > 50
    data.update(X_pgd=data.X_pgd[successful], X_harmful=corrupted.X[corrupted.harmful],
                X_harmless=corrupted.X[corrupted.harmless])
    msp = ConfidenceDetector(data.model, input_shape=data.input_shape, random_state=seed).fit(data.X_fit)
    data.msp = {home: home_auroc(msp, data, home) for home in ("pgd", "harmful")}
    return data


@pytest.fixture(scope="module")
def mlp():
    return _workload("digits-mlp", seed=0)


@pytest.fixture(scope="module")
def cnn():
    return _workload("digits-cnn", seed=0)


def _auroc(det, negatives, positives):
    scores = adversarial_scores(det, np.concatenate([negatives, positives]))
    return roc_auc_score(np.r_[np.zeros(len(negatives)), np.ones(len(positives))], scores)


def home_auroc(det, data, home):
    """AUROC on the home workload: successful PGD rows vs clean test rows, or harmful vs harmless."""
    if home == "pgd":
        return _auroc(det, data.X_test, data.X_pgd)
    return _auroc(det, data.X_harmless, data.X_harmful)


def _default_detector(name, data):
    common = {"input_shape": data.input_shape, "random_state": data.seed}
    if name == "AdversarialAE":
        return AdversarialAEDetector(data.model, **common)
    if name == "VAE":
        return VAEDetector(data.model, **common)
    if name == "ModelDistillation":
        return ModelDistillationDetector(data.model, **common)
    return DeepNeuralRejection(data.model, layers=data.dnr_layers, **common)  # layers has no default


def _assert_beats_max_softmax(name, home, data):
    det = _default_detector(name, data).fit(data.X_fit, data.y_fit)
    auroc = home_auroc(det, data, home)
    assert auroc >= data.msp[home], f"{name} AUROC {auroc:.3f} < MSP {data.msp[home]:.3f} on {home}"


@pytest.mark.parametrize(
    "name, home",
    [("AdversarialAE", "pgd"), ("VAE", "pgd"), ("DNR", "pgd"), ("ModelDistillation", "harmful")],
)
def test_default_detector_beats_max_softmax_on_the_mlp(mlp, name, home):
    _assert_beats_max_softmax(name, home, mlp)


@pytest.mark.parametrize("name", ["AdversarialAE", "VAE", "DNR"])
def test_default_detector_beats_max_softmax_on_cnn_pgd(cnn, name):
    _assert_beats_max_softmax(name, "pgd", cnn)


def test_default_distillation_ties_max_softmax_on_cnn_corruptions(cnn):
    # On the CNN no setting of benchmarks/sweep_defaults.py beats MSP over seeds 0-2 (README,
    # Detection benchmark, How the defaults were chosen; seed 0 0.898 vs 0.887, seed 2 0.898
    # vs 0.910): the default must at least tie it.
    det = _default_detector("ModelDistillation", cnn).fit(cnn.X_fit, cnn.y_fit)
    auroc, msp = home_auroc(det, cnn, "harmful"), cnn.msp["harmful"]
    assert auroc >= msp - 0.03, f"ModelDistillation AUROC {auroc:.3f} is far below MSP {msp:.3f}"
    if auroc < msp:
        pytest.xfail(
            f"ModelDistillation does not beat MSP on harmful corruptions of the digits CNN: {auroc:.3f} vs "
            f"{msp:.3f} (0.901 vs 0.903 over seeds 0-2; see README, Detection benchmark, How the defaults were chosen)"
        )
