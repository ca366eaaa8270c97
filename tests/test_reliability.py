"""Reliability of single estimators: the global RNG, half-precision input, memory-bounded batches.

The contract every estimator keeps (bad input, unfitted use, no mutation, threads, failed
fits) is tested on each instance of the list in test_common.py.
"""

import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

from skadv import ModelDistillationDetector, VAEDetector

from _models import seeded_mlp

N_FEATURES = 16
X_FIT = np.random.RandomState(0).rand(60, N_FEATURES).astype(np.float32)


@pytest.fixture(scope="module")
def vae():
    return VAEDetector(seeded_mlp(N_FEATURES, 3, 8), epochs=1, n_samples=3, random_state=0).fit(X_FIT)


def test_seeded_vae_scoring_leaves_the_global_rng_alone(vae):
    state = torch.random.get_rng_state()
    vae.score_samples(X_FIT)
    vae.distinct_labels(X_FIT)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_half_precision_tensors_are_widened_exactly(vae):
    for dtype in (torch.bfloat16, torch.float16):
        x = torch.as_tensor(X_FIT[:9]).to(dtype)
        np.testing.assert_array_equal(vae.score_samples(x), vae.score_samples(x.float().numpy()))
    x16 = torch.as_tensor(X_FIT[:9]).half()
    np.testing.assert_array_equal(vae.score_samples(x16.numpy()), vae.score_samples(x16.float().numpy()))
    refit = ModelDistillationDetector(seeded_mlp(N_FEATURES, 3, 8), epochs=1, random_state=0)
    refit.fit(torch.as_tensor(X_FIT).bfloat16())
    assert refit.n_features_in_ == N_FEATURES


def test_inference_batch_size_set_after_fit_is_validated_at_predict_and_bounds_memory(vae):
    expected = vae.score_samples(X_FIT)
    try:
        vae.set_params(inference_batch_size=1e6)
        with pytest.raises(
            InvalidParameterError, match="'inference_batch_size' parameter of VAEDetector must be an int"
        ):
            vae.score_samples(X_FIT)
        for inference_batch_size in (10**6, None):
            vae.set_params(inference_batch_size=inference_batch_size)
            # a row expands into 2 * (K + 1) * d values while scored: batches stay within the 2**22 budget
            assert vae._inference_batch_size() * 2 * (vae.n_samples + 1) * N_FEATURES <= 2**22
            np.testing.assert_array_equal(vae.score_samples(X_FIT), expected)
        vae.set_params(inference_batch_size=8)
        assert vae._inference_batch_size() == 8
        np.testing.assert_array_equal(vae.score_samples(X_FIT), expected)
    finally:
        vae.set_params(inference_batch_size=None)
