"""Tests of VAEDetector, calibration_analysis and the VAE displays."""

import copy

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from torch import nn

from skadv import VAEDetector, calibration_analysis
from skadv.attacks import PGD
from skadv.detectors._vae import (
    VAE,
    ELBOLoss,
    consistency_score,
    count_distinct_labels,
    elbo_loss,
    optimal_log_var_x,
)
from skadv.plotting import DistinctLabelsDisplay, ReconstructionCalibrationDisplay

from _attack_helpers import digits_data, train_mlp
from _models import LazyMLP


@pytest.fixture(scope="module")
def small_data():
    rng = np.random.RandomState(0)
    return rng.rand(60, 6).astype(np.float32)


@pytest.fixture(scope="module")
def small_detector(small_data):
    return VAEDetector(LazyMLP(n_classes=3), epochs=3, n_samples=5, latent_dim=2, random_state=0).fit(
        small_data
    )


# ----------------------------------------------------------------------------- the ELBO


def test_elbo_on_fixed_weights_equals_formula():
    encoder = nn.Linear(3, 4)  # latent_dim = 2: means, then log-variances
    decoder = nn.Linear(2, 3)
    with torch.no_grad():
        encoder.weight.copy_(
            torch.tensor([[0.5, -1.0, 0.0], [0.0, 0.2, 0.3], [0.1, 0.0, -0.2], [0.0, -0.3, 0.4]])
        )
        encoder.bias.copy_(torch.tensor([0.1, -0.2, -0.5, 0.3]))
        decoder.weight.copy_(torch.tensor([[1.0, 0.0], [0.5, -0.5], [0.0, 2.0]]))
        decoder.bias.copy_(torch.tensor([0.0, 0.1, -0.1]))
    vae = VAE(encoder, decoder, latent_dim=2, input_shape=(3,))
    x = torch.tensor([[0.2, 0.4, 0.6], [1.0, 0.0, 0.5]])
    noise = torch.tensor([[0.3, -1.2], [0.7, 0.1]])
    reconstruction, mean, log_var = vae(x, noise)

    # The same by hand, in numpy float64.
    W, b = encoder.weight.detach().double().numpy(), encoder.bias.detach().double().numpy()
    V, c = decoder.weight.detach().double().numpy(), decoder.bias.detach().double().numpy()
    xn, en = x.double().numpy(), noise.double().numpy()
    h = xn @ W.T + b
    mu, lv = h[:, :2], h[:, 2:]
    z = mu + np.exp(lv / 2) * en
    x_hat = z @ V.T + c
    np.testing.assert_allclose(reconstruction.detach().numpy(), x_hat, rtol=1e-6)
    log_var_x = np.log(0.3)
    expected = 0.5 * ((xn - x_hat) ** 2 / 0.3 + log_var_x + np.log(2 * np.pi)).sum(1) + 0.5 * (
        mu**2 + np.exp(lv) - 1 - lv
    ).sum(1)
    for beta in (1.0, 0.25):
        kl = 0.5 * (mu**2 + np.exp(lv) - 1 - lv).sum(1)
        got = elbo_loss(
            x, reconstruction, mean, log_var, torch.tensor(log_var_x, dtype=torch.float32), beta=beta
        )
        np.testing.assert_allclose(got.detach().numpy(), expected + (beta - 1) * kl, rtol=1e-5)

    # The training criterion uses the batch's mean squared error as decoder variance.
    mse = ((xn - x_hat) ** 2).mean()
    np.testing.assert_allclose(optimal_log_var_x(x, reconstruction).item(), np.log(mse), rtol=1e-5)
    nll = 0.5 * ((xn - x_hat) ** 2 / mse + np.log(mse) + np.log(2 * np.pi)).sum(1)
    criterion = ELBOLoss(beta=1.0)
    np.testing.assert_allclose(
        criterion((reconstruction, mean, log_var), x).item(),
        (nll + 0.5 * (mu**2 + np.exp(lv) - 1 - lv).sum(1)).mean(),
        rtol=1e-5,
    )


def test_training_decreases_the_loss(small_data):
    det = VAEDetector(LazyMLP(n_classes=3), epochs=30, batch_size=16, latent_dim=2, random_state=0).fit(
        small_data
    )
    losses = [epoch["train_loss"] for epoch in det.history_]
    assert len(losses) == 30
    assert losses[-1] < losses[0] - 1


# ----------------------------------------------------------------------------- consistency


def test_count_distinct_labels_hand_built():
    labels = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 1], [2, 1, 0, 2], [3, 1, 0, 2]])
    np.testing.assert_array_equal(count_distinct_labels(labels).numpy(), [1, 2, 3, 4])


def test_consistency_scores_hand_built():
    # Two rows, K = 2 reconstructions, 2 classes.
    p_input = torch.tensor([[0.9, 0.1], [0.5, 0.5]])
    p_samples = torch.tensor([[[0.9, 0.1], [0.9, 0.1]], [[0.8, 0.2], [0.2, 0.8]]])
    kl = consistency_score(p_input.log(), p_samples.log(), "kl").numpy()
    np.testing.assert_allclose(kl[0], 0.0, atol=1e-6)
    expected = np.mean(
        [0.5 * np.log(0.5 / 0.8) + 0.5 * np.log(0.5 / 0.2), 0.5 * np.log(0.5 / 0.2) + 0.5 * np.log(0.5 / 0.8)]
    )
    np.testing.assert_allclose(kl[1], expected, rtol=1e-5)
    disagreement = consistency_score(p_input.log(), p_samples.log(), "disagreement").numpy()
    np.testing.assert_allclose(disagreement, [0.1, 0.5], rtol=1e-5)


class _Thresholds(nn.Module):
    """1-D classifier: class 0 below -0.5, class 1 in between, class 2 above 0.5."""

    def forward(self, x):
        x = x.reshape(x.shape[0], 1)
        return torch.cat([-10 * x - 5, torch.zeros_like(x), 10 * x - 5], dim=1)


def test_distinct_labels_on_hand_built_vae():
    X = np.array([[0.0], [5.0], [-5.0], [0.6]], dtype=np.float32)
    det = VAEDetector(_Thresholds(), latent_dim=1, n_samples=20, epochs=1, score_type="consistency",
                      random_state=0).fit(X)
    # Replace the trained VAE by one with known posteriors: mean = x, variance 1; decoder = identity.
    encoder = nn.Linear(1, 2)
    with torch.no_grad():
        encoder.weight.copy_(torch.tensor([[1.0], [0.0]]))
        encoder.bias.zero_()
    det.vae_ = VAE(encoder, nn.Identity(), latent_dim=1, input_shape=(1,)).eval()

    counts = det.distinct_labels(X)
    noise = det._latent_noise().numpy()[:, 0]  # the K shared standard-normal draws
    z = X[:, :1] + noise[None, :]
    labels = np.where(z < -0.5, 0, np.where(z > 0.5, 2, 1))
    np.testing.assert_array_equal(counts, [len(np.unique(row)) for row in labels])
    np.testing.assert_array_equal(counts[:3], [3, 1, 1])

    # The smooth scores follow the same reconstructions.
    det.set_params(consistency="disagreement")
    log_p = torch.log_softmax(_Thresholds()(torch.as_tensor(z.reshape(-1, 1))), dim=1).reshape(4, 20, 3)
    expected = 1 - log_p.exp().mean(dim=1).max(dim=1).values.numpy()
    # the reference is float32; skadv computes the scores in float64
    np.testing.assert_allclose(det.adversarial_score(X), expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- seeding


def test_scores_are_seeded(small_data):
    model = LazyMLP(n_classes=3)
    params = dict(epochs=2, n_samples=5, latent_dim=2)
    a = VAEDetector(model, random_state=3, **params)
    b = VAEDetector(model, random_state=3, **params)
    c = VAEDetector(model, random_state=4, **params)
    for score in ("consistency", "reconstruction", "combined"):
        a.set_params(score_type=score).fit(small_data)
        b.set_params(score_type=score).fit(small_data)
        c.set_params(score_type=score).fit(small_data)
        np.testing.assert_array_equal(a.adversarial_score(small_data), b.adversarial_score(small_data))
        np.testing.assert_array_equal(a.adversarial_score(small_data), a.adversarial_score(small_data))
        assert not np.array_equal(a.adversarial_score(small_data), c.adversarial_score(small_data))
    np.testing.assert_array_equal(a.distinct_labels(small_data), b.distinct_labels(small_data))


def test_row_scores_do_not_depend_on_other_rows(small_detector, small_data):
    # Every row gets the same K latent draws, so a row's score is its own. CPU matrix kernels
    # still round a row of odd width differently by its memory alignment (last float32 bit of
    # the log-probabilities), hence the tolerance.
    full = small_detector.adversarial_score(small_data)
    single = np.concatenate([small_detector.adversarial_score(small_data[i : i + 1]) for i in (0, 7, 30)])
    np.testing.assert_allclose(single, full[[0, 7, 30]], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        small_detector.adversarial_score(small_data[::-1]), full[::-1], rtol=1e-4, atol=1e-6
    )


def test_score_hook_is_differentiable_with_fresh_draws(small_detector, small_data):
    x = torch.as_tensor(small_data[:4]).requires_grad_(True)
    first = small_detector._torch_adversarial_score(x)
    (grad,) = torch.autograd.grad(first.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    second = small_detector._torch_adversarial_score(x)
    assert not torch.equal(first.detach(), second.detach())  # EOT: attacks average several calls
    assert VAEDetector._stochastic_score


def test_combined_score_is_sum_of_scaled_parts(small_data):
    det = VAEDetector(
        LazyMLP(n_classes=3), epochs=2, n_samples=4, latent_dim=2, score_type="combined", random_state=0
    )
    det.fit(small_data)
    combined = det.adversarial_score(small_data)
    parts = [
        det.set_params(score_type=s).adversarial_score(small_data) for s in ("consistency", "reconstruction")
    ]
    np.testing.assert_allclose(det.score_scales_, [p.mean() for p in parts], rtol=1e-5)
    np.testing.assert_allclose(
        combined, parts[0] / det.score_scales_[0] + parts[1] / det.score_scales_[1], rtol=1e-5
    )


# ----------------------------------------------------------------------------- persistence and safety


def _outputs(det, X):
    corrected = det.correct(X)
    return [
        det.adversarial_score(X),
        det.decision_function(X),
        det.distinct_labels(X),
        det.reconstruct(X),
        corrected.corrected,
    ]


def test_bad_input(small_detector, small_data):
    with pytest.raises(NotFittedError, match="VAEDetector instance is not fitted yet"):
        VAEDetector(LazyMLP()).adversarial_score(small_data)
    with pytest.raises(NotFittedError, match="VAEDetector instance is not fitted yet"):
        VAEDetector(LazyMLP()).distinct_labels(small_data)
    with pytest.raises(ValueError, match="X has 3 features, but VAEDetector is expecting 6 features"):
        small_detector.adversarial_score(small_data[:, :3])
    with pytest.raises(ValueError, match="Input X contains NaN"):
        small_detector.correct(np.full_like(small_data, np.nan))
    with pytest.raises(ValueError, match="both"):
        VAEDetector(LazyMLP(), encoder_net=nn.Linear(6, 4)).fit(small_data)
    with pytest.raises(ValueError, match="'score_type' parameter of VAEDetector must be a str among"):
        VAEDetector(LazyMLP(), score_type="distinct").fit(small_data)
    with pytest.raises(ValueError, match="2 \\* latent_dim"):
        VAEDetector(
            LazyMLP(), encoder_net=nn.Linear(6, 3), decoder_net=nn.Linear(2, 6), latent_dim=2, epochs=1
        ).fit(small_data)


def test_custom_nets_and_input_shape():
    rng = np.random.RandomState(0)
    X = rng.rand(40, 16).astype(np.float32)
    encoder = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 6))
    decoder = nn.Sequential(nn.Linear(3, 16), nn.Sigmoid())
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    det = VAEDetector(
        model,
        encoder_net=encoder,
        decoder_net=decoder,
        latent_dim=3,
        input_shape=(1, 4, 4),
        epochs=2,
        n_samples=4,
        random_state=0,
    ).fit(X)
    assert det.reconstruct(X).shape == (40, 16)
    assert det.distinct_labels(X).max() <= 4
    assert det.correct(X).defense.shape == (40,)
    # N-D input with the same trailing shape.
    np.testing.assert_array_equal(det.adversarial_score(X.reshape(40, 1, 4, 4)), det.adversarial_score(X))


def test_sklearn_classifier_as_model():
    (X, y), (X_test, y_test) = digits_data(n_train=300, n_test=50)
    clf = LogisticRegression(max_iter=300).fit(X, y + 1)  # labels 1..10, not column indices
    det = VAEDetector(clf, epochs=5, n_samples=4, random_state=0).fit(X)
    result = det.correct(X_test)
    assert set(np.unique(result.no_defense)) <= set(range(1, 11))
    np.testing.assert_array_equal(result.no_defense, clf.predict(X_test))
    analysis = calibration_analysis(det, X_test, y_test + 1, n_bins=4)
    assert np.nanmax(analysis.accuracy) > 0.5
    with pytest.raises(ValueError, match="gradients"):
        det.attack_surface().forward(torch.as_tensor(X_test[:2]))


def test_clone_and_grid_params():
    det = VAEDetector(LazyMLP(), n_samples=7, beta=0.5)
    cloned = clone(det)
    assert cloned.get_params()["n_samples"] == 7 and cloned.get_params()["beta"] == 0.5


# ----------------------------------------------------------------------------- quality on digits


@pytest.fixture(scope="module")
def digits_setup():
    torch.set_num_threads(1)
    (X, y), (X_test, y_test) = digits_data(n_train=1000, n_test=300)
    clf = train_mlp(X, y, hidden=64, n_steps=150)
    det = VAEDetector(clf, epochs=50, score_type="consistency", random_state=0).fit(X)
    X_adv = PGD(clf, norm=np.inf, eps=0.2, step_size=0.01, max_iter=40, random_state=0).generate(
        X_test, y_test
    )
    return clf, det, X_test, y_test, X_adv


def _auroc(scores_clean, scores_other):
    return roc_auc_score(
        np.r_[np.zeros(len(scores_clean)), np.ones(len(scores_other))], np.r_[scores_clean, scores_other]
    )


def test_consistency_detects_pgd_on_digits(digits_setup):
    clf, det, X_test, y_test, X_adv = digits_setup
    with torch.no_grad():
        adv_accuracy = (clf(torch.as_tensor(X_adv)).argmax(1).numpy() == y_test).mean()
    assert adv_accuracy < 0.2  # the attack works
    auroc = _auroc(det.adversarial_score(X_test), det.adversarial_score(X_adv))
    assert auroc >= 0.8, auroc
    # Clean inputs mostly keep one label over their reconstructions; adversarial ones do not.
    counts_clean, counts_adv = det.distinct_labels(X_test), det.distinct_labels(X_adv)
    assert (counts_clean == 1).mean() > 0.6
    assert counts_adv.mean() > counts_clean.mean()


def test_reconstruction_flags_noise_images(digits_setup):
    _, det, X_test, _, _ = digits_setup
    det = copy.deepcopy(det).set_params(score_type="reconstruction")
    noise = np.random.RandomState(1).rand(*X_test.shape).astype(np.float32)
    auroc = _auroc(det.adversarial_score(X_test), det.adversarial_score(noise))
    assert auroc >= 0.95, auroc


def test_correct_purifies_adversarial_digits(digits_setup):
    _, det, X_test, y_test, X_adv = digits_setup
    clean = det.correct(X_test)
    attacked = det.correct(X_adv)
    assert (clean.defense == y_test).mean() > 0.8  # reconstructions of clean digits stay recognisable
    assert (attacked.defense == y_test).mean() > (attacked.no_defense == y_test).mean() + 0.1
    assert (attacked.corrected == y_test).mean() >= (attacked.no_defense == y_test).mean()
    np.testing.assert_array_equal(
        clean.corrected[clean.is_adversarial == 0], clean.no_defense[clean.is_adversarial == 0]
    )


def test_adaptive_pgd_runs_with_eot(digits_setup):
    _, det, X_test, y_test, _ = digits_setup
    attack = PGD(det, norm=np.inf, eps=0.2, step_size=0.02, max_iter=3, eot_samples=2, random_state=0)
    X_adv = attack.generate(X_test[:16], y_test[:16])
    assert X_adv.shape == (16, 64)
    assert np.abs(X_adv - X_test[:16]).max() <= 0.2 + 1e-6


# ----------------------------------------------------------------------------- calibration and displays


def test_calibration_analysis_numbers(digits_setup):
    _, det, X_test, y_test, _ = digits_setup
    result = calibration_analysis(det, X_test, y_test, n_bins=5)
    assert result.bin_edges.shape == (6,) and result.count.sum() == len(X_test)
    reconstruction_loss = copy.deepcopy(det).set_params(score_type="reconstruction").adversarial_score(X_test)
    np.testing.assert_allclose(result.reconstruction_loss, reconstruction_loss, rtol=1e-6)
    in_top_bin = result.confidence >= result.bin_edges[-2]
    np.testing.assert_allclose(result.mean_loss[-1], reconstruction_loss[in_top_bin].mean(), rtol=1e-6)
    assert result.accuracy[-1] > 0.9
    quantile = calibration_analysis(det, X_test, n_bins=4, strategy="quantile")
    assert quantile.accuracy is None and quantile.count.sum() == len(X_test)
    assert np.all(np.diff(quantile.bin_edges) >= 0)


def test_displays_render_png(digits_setup, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, det, X_test, y_test, X_adv = digits_setup
    bars = DistinctLabelsDisplay.from_estimator(det, X_test[:50], X_adv[:50])
    assert bars.frequencies.shape == (2, det.n_samples)
    np.testing.assert_allclose(bars.frequencies.sum(axis=1), 1.0)
    assert len(bars.bars_) == 2 and bars.figure_ is bars.ax_.figure
    bars.figure_.savefig(tmp_path / "distinct.png")

    _fig, ax = plt.subplots()
    calib = ReconstructionCalibrationDisplay.from_estimator(det, X_test, y_test, n_bins=5, ax=ax)
    assert calib.ax_ is ax and calib.analysis.count.sum() == len(X_test)
    calib.figure_.savefig(tmp_path / "calibration.png")

    again = ReconstructionCalibrationDisplay.from_predictions(
        calib.analysis.confidence, calib.analysis.reconstruction_loss, n_bins=5
    )
    np.testing.assert_allclose(again.mean_loss, calib.mean_loss)
    counts = DistinctLabelsDisplay.from_predictions([1, 1, 2], [2, 3, 3], normalize=False)
    assert counts.frequencies.tolist() == [[2, 1, 0], [0, 1, 2]]
    for path in ("distinct.png", "calibration.png"):
        assert (tmp_path / path).read_bytes()[:4] == b"\x89PNG"
    plt.close("all")
