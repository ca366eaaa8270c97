import numpy as np
import pytest
from scipy import ndimage

from skadv.corruptions import (
    CORRUPTIONS,
    ImageCorruption,
    corrupt,
    gaussian_noise,
    pixelate,
)
from skadv.metrics import harmfulness, ks_drift_test


def test_pixelate_averages_blocks_by_hand():
    image = np.arange(16, dtype=float).reshape(4, 4) / 16
    # severity 2: factor 0.5 → 2×2 cells of 2×2 pixels each, averaged then repeated
    out = pixelate(image.reshape(1, 16), severity=2).reshape(4, 4)
    expected = np.kron(image.reshape(2, 2, 2, 2).mean(axis=(1, 3)), np.ones((2, 2)))
    np.testing.assert_allclose(out, expected)


def test_noise_statistics_and_seed():
    X = np.full((400, 64), 0.5)
    noisy = gaussian_noise(X, severity=1, random_state=0)
    assert abs((noisy - X).std() - 0.08) < 0.003
    np.testing.assert_array_equal(noisy, gaussian_noise(X, severity=1, random_state=0))


def test_blur_matches_scipy_per_image_and_channels():
    rng = np.random.RandomState(0)
    X = rng.rand(3, 2 * 6 * 6)
    out = corrupt(X, "gaussian_blur", severity=3, input_shape=(2, 6, 6), clip_values=None)
    expected = ndimage.gaussian_filter(X.reshape(3, 2, 6, 6)[1, 0], sigma=1.0, mode="nearest")
    np.testing.assert_allclose(out.reshape(3, 2, 6, 6)[1, 0], expected)


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_severity_increases_damage(kind):
    X = np.random.RandomState(0).rand(50, 64)
    damage = [np.abs(corrupt(X, kind, s, random_state=0) - X).mean() for s in range(1, 6)]
    assert damage == sorted(damage) and damage[0] > 0
    out = corrupt(X, kind, 5, random_state=0)
    assert out.min() >= 0 and out.max() <= 1


def test_corruption_errors():
    with pytest.raises(ValueError, match="severity"):
        corrupt(np.zeros((1, 64)), "brightness", 6)
    with pytest.raises(ValueError, match="Unknown corruption"):
        corrupt(np.zeros((1, 64)), "fog")
    with pytest.raises(ValueError, match="not square"):
        corrupt(np.zeros((1, 10)), "brightness")
    with pytest.raises(ValueError, match="'kind' parameter of ImageCorruption must be a str among"):
        ImageCorruption("fog").fit(np.zeros((2, 64)))


def test_transformer_matches_function():
    X = np.random.RandomState(0).rand(4, 64)
    t = ImageCorruption("gaussian_noise", severity=3, random_state=1).fit(X)
    np.testing.assert_array_equal(t.transform(X), gaussian_noise(X, 3, random_state=1))


def test_harmfulness_masks():
    r = harmfulness([0, 1, 2, 3], [0, 1, 9, 3], [0, 2, 9, 1])
    assert r.harmful.tolist() == [False, True, False, True]
    assert r.harmless.tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="same length"):
        harmfulness([0], [0, 1], [0])


def test_ks_drift_test_against_scipy():
    from scipy.stats import ks_2samp

    rng = np.random.RandomState(0)
    ref, same, shifted = rng.normal(size=300), rng.normal(size=300), rng.normal(0.5, size=300)
    assert not ks_drift_test(ref, same).is_drift
    result = ks_drift_test(ref, shifted)
    assert result.is_drift
    assert result.p_value == ks_2samp(ref, shifted).pvalue
    with pytest.raises(ValueError, match="NaN"):
        ks_drift_test(ref, [np.nan])
    with pytest.raises(ValueError, match="'p_val' parameter of ks_drift_test must be a float in the range"):
        ks_drift_test(ref, same, p_val=1.0)
    with pytest.raises(ValueError, match="'y_true' parameter of harmfulness must be an array-like"):
        harmfulness(3, [0], [0])
