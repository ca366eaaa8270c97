"""The one model adapter (skadv.utils.adapt_model), thresholds shared by all detectors, skadv.compat."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from torch import nn

from skadv import AdversarialAEDetector, ModelDistillationDetector
from skadv.attacks import FGSM
from skadv.compat import (
    alibi_correct,
    alibi_predict,
    to_channels_first,
    to_channels_last,
)
from skadv.utils import adapt_model

from _models import fit_classifier, seeded_mlp


@pytest.fixture(scope="module")
def adapter_digits():
    """The first 400 digits for training and the next 80 for testing, as (X, y, X_test, y_test)."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return X[:400], y[:400], X[400:480], y[400:480]


@pytest.fixture(scope="module")
def logits_net(adapter_digits):
    """A fitted skorch net whose module returns logits (CrossEntropyLoss)."""
    X, y, _, _ = adapter_digits
    return fit_classifier(seeded_mlp(), X, y, epochs=30, lr=1e-2)


@pytest.fixture(scope="module")
def proba_net(adapter_digits):
    """A fitted skorch net under its default NLLLoss: the module returns probabilities."""
    from skorch import NeuralNetClassifier

    X, y, _, _ = adapter_digits
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10), nn.Softmax(dim=1))
    net = NeuralNetClassifier(module, max_epochs=20, lr=0.5, batch_size=-1, train_split=None, verbose=0)
    return net.fit(X, y)


def _adapted(model, x, **kwargs):
    adapter = adapt_model(model, **kwargs)
    adapter.check_output(x)
    return adapter


# ----------------------------------------------------------------------------- adapter cases


def test_torch_module_logits_and_probabilities(adapter_digits, logits_net):
    _, _, X, _ = adapter_digits
    x = torch.as_tensor(X)
    module = logits_net.module_
    adapter = _adapted(module, x)
    assert adapter.module.output == "logits" and adapter.n_classes == 10 and adapter.classes is None
    assert adapter.module.net is not module  # a private copy
    with torch.no_grad():
        logits = module(x)
        assert torch.equal(adapter.module(x), torch.log_softmax(logits.double(), dim=1))
        assert torch.equal(adapter.module.scores(x), logits)

    # A module ending in softmax, model_output='auto': read as probabilities, never as logits.
    softmax_model = nn.Sequential(module, nn.Softmax(dim=1))
    adapter = _adapted(softmax_model, x)
    assert adapter.module.output == "proba"
    with torch.no_grad():
        np.testing.assert_allclose(adapter.module(x).exp(), softmax_model(x).double(), rtol=1e-6, atol=1e-12)
    # Declared as logits, it is taken at its word.
    assert _adapted(softmax_model, x, model_output="logits").module.output == "logits"


@pytest.mark.parametrize("which", ["proba_net", "logits_net"])
def test_skorch_net_and_frozen_net_equal_the_nets_own_probabilities(adapter_digits, which, request):
    _, _, X, _ = adapter_digits
    net = request.getfixturevalue(which)
    x = torch.as_tensor(X)
    adapter = _adapted(net, x)
    assert adapter.module.output == ("proba" if which == "proba_net" else "logits")
    np.testing.assert_array_equal(adapter.classes, net.classes_)
    with torch.no_grad():
        log_proba = adapter.module(x).numpy()
    np.testing.assert_allclose(np.exp(log_proba), net.predict_proba(X), rtol=1e-5, atol=1e-7)
    frozen = _adapted(FrozenEstimator(net), x)
    with torch.no_grad():
        assert torch.equal(frozen.module(x), adapter.module(x))
        assert torch.equal(frozen.module.scores(x), adapter.module.scores(x))
    # Attacks use the same adapter: identical adversarial examples through the net, its frozen
    # wrapper, and (for logits) the bare module.
    X_adv = FGSM(net, eps=0.1).generate(X[:20])
    np.testing.assert_array_equal(FGSM(FrozenEstimator(net), eps=0.1).generate(X[:20]), X_adv)
    if which == "logits_net":
        np.testing.assert_array_equal(FGSM(net.module_, eps=0.1).generate(X[:20]), X_adv)


def test_sklearn_black_box_only_where_no_gradient_is_needed(adapter_digits):
    X_train, y_train, X, _ = adapter_digits
    logreg = LogisticRegression(max_iter=300).fit(X_train, y_train)
    adapter = _adapted(logreg, torch.as_tensor(X), need_gradients=False)
    assert adapter.module is None and adapter.black_box is not logreg
    np.testing.assert_array_equal(adapter.black_box.predict_proba(X), logreg.predict_proba(X))
    det = ModelDistillationDetector(logreg, epochs=1, random_state=0).fit(X_train[:100])
    np.testing.assert_allclose(
        det._model_log_proba(torch.as_tensor(X)).exp().numpy(), logreg.predict_proba(X), rtol=1e-12, atol=1e-12
    )
    with pytest.raises(ValueError, match=r"Unsupported model of type LogisticRegression.*no gradient"):
        adapt_model(logreg, need_gradients=True)


def test_pipeline_ending_in_a_skorch_net(adapter_digits, logits_net):
    X_train, _, X, _ = adapter_digits
    scaler = StandardScaler().fit(X_train)
    pipe = make_pipeline(scaler, FrozenEstimator(logits_net))
    # Gradients needed: a clear error that says what to do.
    for fit in (
        lambda: AdversarialAEDetector(pipe, epochs=1).fit(X_train[:50]),
        lambda: FGSM(pipe, eps=0.1).generate(X[:5]),
    ):
        with pytest.raises(ValueError, match=r"Pipeline ending in a skorch net.*move the preprocessing"):
            fit()
    # A black box where no gradient is needed: the Pipeline's own probabilities.
    adapter = _adapted(pipe, torch.as_tensor(X), need_gradients=False)
    np.testing.assert_array_equal(adapter.black_box.predict_proba(X), pipe.predict_proba(X))
    det = ModelDistillationDetector(pipe, epochs=1, random_state=0).fit(X_train[:100])
    assert det.model_ is None
    np.testing.assert_allclose(
        det._model_log_proba(torch.as_tensor(X)).exp().numpy(), np.clip(pipe.predict_proba(X), 1e-12, None), rtol=1e-6
    )


class _Returns(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.linear = nn.Linear(64, 3)

    def forward(self, x):
        return self.fn(self.linear(x))


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (lambda z: z[:, 0], r"returns shape \(8,\) for 8 rows"),
        (lambda z: (z, z), "returns a tuple of 2 items"),
        (lambda z: z[:, :1], r"n_classes >= 2; it returns shape \(8, 1\)"),
    ],
)
def test_malformed_outputs_are_value_errors_naming_the_shape(adapter_digits, fn, match):
    X_train, _, X, _ = adapter_digits
    with pytest.raises(ValueError, match=match):
        _adapted(_Returns(fn), torch.as_tensor(X[:8]))
    # The detectors and the attacks check the output once, at fit / generate.
    with pytest.raises(ValueError, match=match):
        ModelDistillationDetector(_Returns(fn), epochs=1).fit(X_train[:8])
    with pytest.raises(ValueError, match=match):
        FGSM(_Returns(fn), eps=0.1).generate(X[:8])


def test_width_and_declared_outputs_are_checked(adapter_digits, logits_net):
    X_train, y_train, X, _ = adapter_digits
    x = torch.as_tensor(X[:8])
    from skorch import NeuralNetClassifier

    torch.manual_seed(0)
    wrong_classes = NeuralNetClassifier(
        seeded_mlp(), criterion=nn.CrossEntropyLoss, classes=list(range(11)), max_epochs=1, train_split=None, verbose=0
    ).fit(X_train, y_train)
    with pytest.raises(ValueError, match=r"returns 10 columns \(shape \(8, 10\)\) but knows 11 classes"):
        _adapted(wrong_classes, x)
    with pytest.raises(ValueError, match="model_output='proba' but the model returns negative values"):
        _adapted(logits_net.module_, x, model_output="proba")
    softmax_model = nn.Sequential(logits_net.module_, nn.Softmax(dim=1))
    with pytest.raises(ValueError, match="model_output='log_proba' but the model returns positive values"):
        _adapted(softmax_model, x, model_output="log_proba")
    with pytest.raises(ValueError, match="model_output='log_proba' but"):
        ModelDistillationDetector(softmax_model, model_output="log_proba", epochs=1).fit(X_train[:20])


# ----------------------------------------------------------------------------- thresholds


def test_infer_threshold_percent_warning_and_hand_computation(adapter_digits, logits_net):
    X_train, _, X, _ = adapter_digits
    det = ModelDistillationDetector(logits_net.module_, epochs=1, random_state=0).fit(X_train[:100])
    scores = det.adversarial_score(X)
    det.infer_threshold(X, 90)
    assert det.threshold_ == np.percentile(scores, 90) and det.offset_ == -det.threshold_
    np.testing.assert_array_equal(det.predict(X) == -1, scores > np.percentile(scores, 90))
    with pytest.warns(UserWarning, match=r"threshold_perc=0.9 is a percent.*threshold_perc=90"):
        det.infer_threshold(X, 0.9)
    assert det.threshold_ == np.percentile(scores, 0.9)
    with pytest.raises(ValueError, match="threshold_perc must be a percent"):
        det.infer_threshold(X, 120)


# ----------------------------------------------------------------------------- skadv.compat


def test_alibi_views_equal_the_detectors_own_outputs(adapter_digits, logits_net):
    X_train, _, X, _ = adapter_digits
    det = AdversarialAEDetector(logits_net.module_, epochs=2, data_type="image", random_state=0).fit(X_train)
    det.infer_threshold(X, 80)
    out = alibi_predict(det, X)
    assert set(out) == {"meta", "data"} and set(out["data"]) == {"is_adversarial", "instance_score"}
    # alibi-detect's meta: its keys only, its detector name, the data_type given.
    assert set(out["meta"]) == {"name", "detector_type", "data_type", "online", "version"}
    assert out["meta"]["name"] == "AdversarialAE" and out["meta"]["detector_type"] == "adversarial"
    assert out["meta"]["data_type"] == "image" and out["meta"]["online"] is False
    np.testing.assert_array_equal(out["data"]["instance_score"], det.adversarial_score(X))
    np.testing.assert_array_equal(out["data"]["is_adversarial"], (det.predict(X) == -1).astype(int))
    assert 0 < out["data"]["is_adversarial"].sum() < len(X)
    assert alibi_predict(det, X, return_instance_score=False)["data"]["instance_score"] is None

    corrected = alibi_correct(det, X)
    expected = det.correct(X)
    assert set(corrected["data"]) == {"instance_score", "is_adversarial", "corrected", "no_defense", "defense"}
    for key, value in corrected["data"].items():
        np.testing.assert_array_equal(value, expected[key])
    np.testing.assert_array_equal(corrected["data"]["is_adversarial"], out["data"]["is_adversarial"])
    assert corrected["meta"] == out["meta"]
    partial = alibi_correct(det, X, return_instance_score=False, return_all_predictions=False)["data"]
    assert partial["instance_score"] is partial["no_defense"] is partial["defense"] is None
    with pytest.raises(ValueError, match="has no correct"):
        alibi_correct(ModelDistillationDetector(logits_net.module_), X)


def test_alibi_view_of_dnr_uses_its_reject_decision(adapter_digits, logits_net):
    from skadv import DeepNeuralRejection

    X_train, y_train, X, _ = adapter_digits
    dnr = DeepNeuralRejection(logits_net.module_, layers=["2"], cv=3, random_state=0).fit(X_train[:200], y_train[:200])
    dnr.infer_threshold(X, 75)
    out = alibi_predict(dnr, X)
    np.testing.assert_array_equal(out["data"]["is_adversarial"], (dnr.predict(X) == -1).astype(int))
    np.testing.assert_array_equal(out["data"]["instance_score"], -dnr.score_samples(X))
    assert out["meta"]["name"] == "DNRDetector" and out["meta"]["data_type"] is None
    assert out["data"]["is_adversarial"].sum() == 20


# ----------------------------------------------------------------------------- channels-last images


class _TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 5 * 6, 3))

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)))


def test_channels_last_images_declared_equal_transposed_by_hand():
    rng = np.random.RandomState(0)
    nhwc = rng.rand(60, 5, 6, 3).astype(np.float32)
    nchw_by_hand = nhwc.transpose(0, 3, 1, 2).reshape(60, -1)
    rows = to_channels_first(nhwc)
    np.testing.assert_array_equal(rows, nchw_by_hand)
    np.testing.assert_array_equal(to_channels_first(nhwc.reshape(60, -1), image_shape=(5, 6, 3)), nchw_by_hand)
    np.testing.assert_array_equal(to_channels_last(rows, (3, 5, 6)), nhwc)
    np.testing.assert_array_equal(to_channels_last(rows.reshape(60, 3, 5, 6), None), nhwc)

    torch.manual_seed(0)
    model = _TinyCNN()
    params = {"input_shape": (3, 5, 6), "epochs": 2, "random_state": 0}
    by_hand = ModelDistillationDetector(model, **params).fit(nchw_by_hand)
    piped = make_pipeline(
        FunctionTransformer(to_channels_first, kw_args={"image_shape": (5, 6, 3)}),
        ModelDistillationDetector(model, **params),
    ).fit(nhwc.reshape(60, -1))
    np.testing.assert_array_equal(piped.score_samples(nhwc.reshape(60, -1)), by_hand.score_samples(nchw_by_hand))
    with pytest.raises(ValueError, match=r"image_shape=\(5, 6, 2\) must have 3 dimensions holding the 90 values"):
        to_channels_first(nhwc.reshape(60, -1), image_shape=(5, 6, 2))
    with pytest.raises(ValueError, match="4-D images"):
        to_channels_first(nhwc.reshape(60, -1))
