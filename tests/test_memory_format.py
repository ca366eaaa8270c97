"""Tests of the memory_format parameter and the convolution-sized inference batches."""

import pickle
import threading

import numpy as np
import pytest
import torch
from torch import nn

from skadv import AdversarialAEDetector, ModelDistillationDetector, VAEDetector

SHAPE = (3, 8, 8)


class ViewingCNN(nn.Module):
    """A CNN that flattens with ``view``: it fails on channels-last activations."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.shape[0], -1))


def _cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 5)
    )


def _student():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))


DETECTORS = {
    "ae": lambda model, **kw: AdversarialAEDetector(model, input_shape=SHAPE, epochs=2, random_state=0, **kw),
    "vae": lambda model, **kw: VAEDetector(model, input_shape=SHAPE, epochs=2, n_samples=3, random_state=0, **kw),
    "distillation": lambda model, **kw: ModelDistillationDetector(
        model, distilled_model=_student(), input_shape=SHAPE, epochs=2, random_state=0, **kw
    ),
}


@pytest.fixture(scope="module")
def images():
    return np.random.RandomState(0).uniform(size=(70, int(np.prod(SHAPE)))).astype(np.float32)


@pytest.mark.parametrize("name", DETECTORS)
def test_auto_scores_convolutions_channels_last_with_channels_first_scores(name, images):
    auto = DETECTORS[name](_cnn()).fit(images)
    first = DETECTORS[name](_cnn(), memory_format="contiguous").fit(images)
    assert auto.memory_format_ == "channels_last"
    assert first.memory_format_ == "contiguous"
    # Training is channels-first either way: the same networks, scored in another layout.
    scores, reference = auto.adversarial_score(images), first.adversarial_score(images)
    np.testing.assert_allclose(scores, reference, rtol=1e-5, atol=1e-7)
    assert auto.threshold_ == pytest.approx(first.threshold_, rel=1e-5, abs=1e-7)
    # The fitted networks' weights are laid out to match (what makes oneDNN faster) ...
    assert auto.model_.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert first.model_.net[0].weight.is_contiguous()
    # ... and laying them out channels-first again gives the channels-first scores.
    auto._use_memory_format("contiguous")
    np.testing.assert_array_equal(auto.adversarial_score(images), reference)


@pytest.mark.parametrize("name", DETECTORS)
def test_channels_last_scores_are_batch_invariant_thread_safe_and_persist(name, images):
    det = DETECTORS[name](_cnn()).fit(images)
    assert det.memory_format_ == "channels_last"
    full = det.adversarial_score(images)
    # A row's score is its own: the same in a batch of 8, of 64 (the default) or alone.
    np.testing.assert_array_equal(det.set_params(inference_batch_size=8).adversarial_score(images), full)
    np.testing.assert_array_equal(det.adversarial_score(images[5:6]), full[5:6])
    det.set_params(inference_batch_size=None)
    results = [None] * 4

    def score(i):
        results[i] = det.adversarial_score(images)

    threads = [threading.Thread(target=score, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        np.testing.assert_array_equal(result, full)
    loaded = pickle.loads(pickle.dumps(det))
    assert loaded.memory_format_ == "channels_last"
    np.testing.assert_array_equal(loaded.adversarial_score(images), full)


def test_default_conv_inference_batches_hold_64_rows(images):
    det = DETECTORS["ae"](_cnn()).fit(images)
    assert det._inference_batch_size() == 64
    assert det.set_params(inference_batch_size=16)._inference_batch_size() == 16
    # Without convolutions the cache-sized rule stays (here 2**18 // (4 * 192) // 8 * 8 rows).
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(192, 5))
    det = AdversarialAEDetector(mlp, epochs=1, random_state=0).fit(images)
    assert det.memory_format_ == "contiguous"
    assert det._inference_batch_size() == 2**18 // (4 * 192) // 8 * 8


def test_a_network_reading_its_layout_stays_channels_first(images):
    det = DETECTORS["ae"](ViewingCNN()).fit(images)
    assert det.memory_format_ == "contiguous"
    assert np.isfinite(det.adversarial_score(images)).all()
    with pytest.raises(ValueError, match=r"memory_format='channels_last' but the networks do not score.*view"):
        DETECTORS["ae"](ViewingCNN(), memory_format="channels_last").fit(images)


def test_bad_memory_format_values(images):
    with pytest.raises(ValueError, match=r"'memory_format' parameter of AdversarialAEDetector must be a str among"):
        DETECTORS["ae"](_cnn(), memory_format="nhwc").fit(images)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(192, 5))
    with pytest.raises(ValueError, match=r"memory_format='channels_last' needs image rows \(C, H, W\)"):
        AdversarialAEDetector(mlp, epochs=1, memory_format="channels_last").fit(images)


def test_detectors_saved_before_the_parameter_score_channels_first(images):
    det = DETECTORS["ae"](_cnn(), memory_format="contiguous").fit(images)
    state = det.__getstate__()
    del state["memory_format"], state["memory_format_"]
    old = AdversarialAEDetector.__new__(AdversarialAEDetector)
    old.__setstate__(state)
    assert old.get_params()["memory_format"] == "auto"
    assert old.memory_format_ == "contiguous"
    np.testing.assert_array_equal(old.adversarial_score(images), det.adversarial_score(images))
