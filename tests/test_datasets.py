"""Tests of skadv.datasets."""

import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.nn import functional as F

from skadv.datasets import (
    DigitsCNN,
    load_digits8,
    load_digits28,
    make_digits_classifier,
)


def test_without_transformations_rows_are_the_upscaled_framed_digits():
    X, y = load_digits28(40, max_rotation=0, max_shift=0, noise=0, random_state=0)
    digits, labels = load_digits(return_X_y=True)
    images = X.reshape(-1, 28, 28)
    assert np.all(images[:, :4] == 0) and np.all(images[:, 24:] == 0)
    assert np.all(images[:, :, :4] == 0) and np.all(images[:, :, 24:] == 0)
    # Find each row's source digit by its label and content: upscaling is bilinear.
    upscaled = F.interpolate(torch.as_tensor(digits / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8),
                             size=(20, 20), mode="bilinear", align_corners=False).reshape(-1, 400).numpy()
    distances = ((images[:, 4:24, 4:24].reshape(40, 1, 400) - upscaled[None]) ** 2).sum(-1)
    nearest = distances.argmin(1)
    assert np.allclose(distances[np.arange(40), nearest], 0, atol=1e-8)
    np.testing.assert_array_equal(labels[nearest], y)


def test_rows_cycle_through_all_digits_then_repeat_with_new_transformations():
    X, y = load_digits28(1797 + 10, random_state=1)
    digits_y = load_digits(return_X_y=True)[1]
    np.testing.assert_array_equal(np.bincount(y[:1797]), np.bincount(digits_y))
    np.testing.assert_array_equal(y[1797:], y[:10])
    assert not np.allclose(X[1797:], X[:10])


def test_noise_level_and_determinism():
    clean, _ = load_digits28(200, noise=0, random_state=3)
    noisy, _ = load_digits28(200, noise=0.1, random_state=3)
    inside = (clean > 0.3) & (clean < 0.7)  # where clipping to [0, 1] does not bite
    assert abs(np.std(noisy[inside] - clean[inside]) - 0.1) < 0.01
    np.testing.assert_array_equal(noisy, load_digits28(200, noise=0.1, random_state=3)[0])
    assert noisy.dtype == np.float32 and noisy.min() >= 0 and noisy.max() <= 1


def test_bad_parameters():
    with pytest.raises(ValueError, match="n_samples"):
        load_digits28(0)
    with pytest.raises(ValueError, match="noise"):
        load_digits28(5, noise=-1)


# ----------------------------------------------------------------------------- the 8x8 digits and their CNN


def test_load_digits8_is_sklearn_digits_over_16_and_splits_stratified():
    X, y = load_digits8()
    digits, labels = load_digits(return_X_y=True)
    np.testing.assert_array_equal(X, (digits / 16.0).astype(np.float32))
    np.testing.assert_array_equal(y, labels)
    assert X.dtype == np.float32 and y.dtype == np.int64
    X_train, X_test, _, y_test = load_digits8(test_size=0.3, random_state=0)
    assert (len(X_train), len(X_test)) == (1257, 540)
    # Stratified: every class keeps its share (to one row).
    np.testing.assert_allclose(np.bincount(y_test) / 540, np.bincount(labels) / 1797, atol=1 / 540 + 1e-9)
    np.testing.assert_array_equal(load_digits8(test_size=0.3, random_state=0)[1], X_test)
    with pytest.raises(ValueError, match="test_size"):
        load_digits8(test_size=1.5)


@pytest.fixture(scope="module")
def small_digits():
    X, y = load_digits8()
    return X[:300], y[:300]


def test_make_digits_classifier_is_deterministic_and_leaves_the_global_generator(small_digits):
    X, y = small_digits
    state = torch.random.get_rng_state()
    first = make_digits_classifier(X, y, epochs=2, random_state=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    second = make_digits_classifier(X, y, epochs=2, random_state=0)
    other = make_digits_classifier(X, y, epochs=2, random_state=1)
    for name, weight in first.module_.state_dict().items():
        assert torch.equal(weight, second.module_.state_dict()[name]), name
    assert not torch.equal(first.module_.classifier[3].weight, other.module_.classifier[3].weight)
    assert isinstance(first.module_, DigitsCNN) and not first.module_.training
    # Rows and images give the same predictions; the history has the epochs.
    np.testing.assert_array_equal(first.predict(X), first.predict(X.reshape(-1, 1, 8, 8)))
    assert len(first.history) == 2


def test_make_digits_classifier_trains_a_given_module_in_place(small_digits):
    X, y = small_digits
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    initial = mlp[3].weight.detach().clone()
    net = make_digits_classifier(X, y, epochs=10, random_state=0, module=mlp)
    assert net.module_ is mlp and not mlp.training
    assert not torch.equal(mlp[3].weight, initial)  # trained, not replaced by a DigitsCNN
    assert (net.predict(X) == y).mean() > 0.8
    with pytest.raises(ValueError, match="module"):
        make_digits_classifier(X, y, module="mlp")


def test_digits_cnn_takes_28x28_rows_and_rejects_odd_sizes():
    cnn = DigitsCNN(image_size=28)
    assert cnn(torch.zeros(2, 784)).shape == (2, 10)
    assert cnn.classifier[1].in_features == 32 * 14 * 14
    with pytest.raises(ValueError, match="image_size"):
        DigitsCNN(image_size=7)
    with pytest.raises(ValueError, match="square grey images"):
        make_digits_classifier(np.zeros((10, 60), dtype=np.float32), np.arange(10))


def test_epoch_log_has_no_colour_codes_when_redirected(small_digits, capsys):
    X, y = small_digits
    make_digits_classifier(X[:100], y[:100], epochs=2, random_state=0, verbose=True)
    out = capsys.readouterr().out  # captured: not a terminal
    assert "train_loss" in out and len(out.strip().splitlines()) == 4  # header, rule, two epochs
    assert "\x1b" not in out
    make_digits_classifier(X[:100], y[:100], epochs=1, random_state=0)
    assert capsys.readouterr().out == ""  # quiet by default


def test_epoch_log_keeps_colour_codes_on_a_terminal(monkeypatch):
    from skadv._core import EpochLog

    row = {"epoch": 1, "train_loss": 0.5, "train_loss_best": True, "dur": 0.1}
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert "\x1b[" in EpochLog().initialize().table(row)
    assert "\x1b[" not in EpochLog(sink=lambda text: None).initialize().table(row)  # a logger gets plain text
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert "\x1b[" not in EpochLog().initialize().table(row)


def test_detector_epoch_log_has_no_colour_codes_when_redirected(small_digits, capsys):
    from skadv import ModelDistillationDetector

    from _models import seeded_mlp

    X, _ = small_digits
    ModelDistillationDetector(seeded_mlp(), epochs=2, verbose=True, random_state=0).fit(X[:100])
    captured = capsys.readouterr()  # captured: not a terminal
    lines = captured.out.strip().splitlines()
    assert lines[0].split() == ["epoch", "train_loss", "dur"] and len(lines) == 4  # header, rule, two epochs
    assert "\x1b[" not in captured.out + captured.err
