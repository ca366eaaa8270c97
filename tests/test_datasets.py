"""Tests of skadv.datasets."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.nn import functional as F

from skadv.datasets import load_digits28


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
