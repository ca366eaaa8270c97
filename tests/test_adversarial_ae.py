"""Tests of AdversarialAEDetector."""

import copy

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from skorch.callbacks import Callback
from torch import nn

from skadv import AdversarialAEDetector
from skadv._core import tempered_proba
from skadv.attacks import PGD
from skadv.detectors._adversarial_ae import AdversarialAELoss, default_autoencoder

from _models import fit_classifier

# ----------------------------------------------------------------------------- fixtures


def _seeded(module, seed):
    """Give ``module`` fixed, reproducible weights."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.8)
    return module


@pytest.fixture(scope="module")
def tiny():
    """A 3-feature problem with fixed-weight classifier, autoencoder and head."""
    X = np.random.RandomState(0).uniform(0, 1, size=(12, 3)).astype(np.float32)
    clf = _seeded(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3)), 1)
    ae = _seeded(nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 3)), 2)
    head = _seeded(nn.Linear(4, 2), 3)
    return X, clf, ae, head


def _np(t):
    return t.detach().double().numpy()


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _kl(p, q):
    return (p * (np.log(p) - np.log(q))).sum(axis=1)


def _hand_formula(X, clf, ae, head, temperature, w_hl, w_model, w_recon):
    """Score and loss of the adversarial AE written out in float64 numpy."""
    W1, b1, W2, b2 = (_np(p) for p in clf.parameters())
    A1, c1, A2, c2 = (_np(p) for p in ae.parameters())
    H, h = (_np(p) for p in head.parameters())
    x = X.astype(np.float64)
    x_rec = np.tanh(x @ A1.T + c1) @ A2.T + c2

    def hidden(v):
        return np.maximum(v @ W1.T + b1, 0)

    p = _softmax(hidden(x) @ W2.T + b2)
    q = _softmax(hidden(x_rec) @ W2.T + b2)
    p_t = _softmax(np.log(p) / temperature)
    model_kl = _kl(p_t, q)
    hidden_kl = _kl(_softmax(hidden(x) @ H.T + h), _softmax(hidden(x_rec) @ H.T + h))
    score = model_kl + w_hl * hidden_kl
    squared_error = (x - x_rec) ** 2
    scale = model_kl.std() / (squared_error.std() + 1e-10)
    loss = w_model * score.mean() + w_recon * scale * squared_error.mean()
    return score, loss


# ----------------------------------------------------------------------------- formula


def test_loss_and_score_match_formula(tiny):
    X, clf, ae, head = tiny
    params = dict(temperature=0.5, w_hl=2.0, w_model=1.5, w_recon=0.7)
    expected_score, expected_loss = _hand_formula(X, clf, ae, head, **params)

    # One full batch with a vanishing SGD step: the recorded training loss is the loss
    # at the given weights, and the weights stay as given.
    det = AdversarialAEDetector(
        clf,
        ae=ae,
        hidden_layer_kld={"1": 2},
        model_hl=[head],
        w_model_hl=[params["w_hl"]],
        temperature=params["temperature"],
        w_model=params["w_model"],
        w_recon=params["w_recon"],
        epochs=1,
        batch_size=len(X),
        optimizer="sgd",
        lr=1e-30,
        random_state=0,
    ).fit(X)
    assert det.history_[0]["train_loss"] == pytest.approx(expected_loss, abs=1e-6)
    np.testing.assert_allclose(det.adversarial_score(X), expected_score, atol=1e-6)

    # The criterion itself, on the frozen classifier and the given modules.
    criterion = AdversarialAELoss(
        temperature=params["temperature"],
        w_model=params["w_model"],
        w_recon=params["w_recon"],
        w_model_hl=(params["w_hl"],),
        hidden_layers=("1",),
    )
    x = torch.from_numpy(X)
    loss = criterion(x, ae(x), det.model_, nn.ModuleList([nn.Sequential(nn.Flatten(), head)]))
    assert float(loss.detach()) == pytest.approx(expected_loss, abs=1e-6)


def _hand_training_step(X, clf, ae, *, temperature, w_model, w_recon, kl_clip, optimizer, lr):
    """Loss at the given weights and the weights after one step, in float64 torch.

    The documented loss ``w_model · mean KL(M(x)_T ‖ M(x')) + w_recon · s · mean((x − x')²)``
    (``s`` a constant of the batch; both distributions clipped to ``[kl_clip, 1]`` when
    given), its gradient by autograd, then the optimizer's update written out.
    """
    x = torch.from_numpy(X).double()
    clf = copy.deepcopy(clf).double()
    params = [p.detach().double().clone().requires_grad_(True) for p in ae.parameters()]
    A1, c1, A2, c2 = params
    x_rec = torch.tanh(x @ A1.T + c1) @ A2.T + c2
    p = torch.softmax(torch.log_softmax(clf(x), dim=1).detach() / temperature, dim=1)
    q = torch.softmax(clf(x_rec), dim=1)
    if kl_clip is not None:
        p, q = p.clamp(kl_clip, 1), q.clamp(kl_clip, 1)
    kl = (p * (p.log() - q.log())).sum(dim=1)
    squared_error = (x - x_rec) ** 2
    scale = kl.detach().std(correction=0) / (squared_error.detach().std(correction=0) + 1e-10)
    loss = w_model * kl.mean() + w_recon * scale * squared_error.mean()
    grads = torch.autograd.grad(loss, params)
    if optimizer == "sgd":
        updated = [w - lr * g for w, g in zip(params, grads)]
    else:  # Adam's first step: m = (1 − β1) g, v = (1 − β2) g², bias-corrected
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        updated = [
            w - lr * ((1 - beta1) * g / (1 - beta1)) / (((1 - beta2) * g**2 / (1 - beta2)).sqrt() + eps)
            for w, g in zip(params, grads)
        ]
    return float(loss.detach()), [u.detach().numpy() for u in updated], [g.numpy() for g in grads]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("kl_clip", [None, 0.05])
def test_one_training_step_matches_hand_computation(tiny, optimizer, kl_clip):
    X, clf, ae, _ = tiny
    params = {"temperature": 0.5, "w_model": 1.5, "w_recon": 0.7, "kl_clip": kl_clip}
    lr = 0.05
    expected_loss, expected_weights, grads = _hand_training_step(X, clf, ae, optimizer=optimizer, lr=lr, **params)
    if kl_clip is not None:  # the clip bites on this batch: it changes the gradient
        unclipped = _hand_training_step(X, clf, ae, optimizer="sgd", lr=lr, **{**params, "kl_clip": None})[2]
        assert not np.allclose(grads[0], unclipped[0], atol=1e-6)
    det = AdversarialAEDetector(
        clf, ae=ae, epochs=1, batch_size=len(X), optimizer=optimizer, lr=lr, random_state=0, **params
    ).fit(X)
    assert det.history_[0]["train_loss"] == pytest.approx(expected_loss, rel=1e-5)
    for trained, expected, grad in zip(det.ae_.parameters(), expected_weights, grads):
        # Adam's first step is ±lr wherever |g| ≫ eps: compare where the sign is unambiguous.
        settled = np.abs(grad) > 1e-5
        np.testing.assert_allclose(_np(trained)[settled], expected[settled], rtol=1e-4, atol=1e-6)


def test_int_layer_index_is_the_named_layer(tiny):
    X, clf, ae, head = tiny
    kwargs = dict(ae=ae, model_hl=[head], epochs=2, random_state=0)
    by_name = AdversarialAEDetector(clf, hidden_layer_kld={"1": 2}, **kwargs).fit(X)
    by_index = AdversarialAEDetector(clf, hidden_layer_kld={1: 2}, **kwargs).fit(X)
    assert by_index.hidden_layers_ == ("1",)
    np.testing.assert_array_equal(by_name.adversarial_score(X), by_index.adversarial_score(X))


def test_temperature_below_one_sharpens():
    log_proba = torch.log_softmax(torch.randn(20, 5, generator=torch.Generator().manual_seed(0)), dim=1)
    proba = log_proba.exp()
    sharp = tempered_proba(log_proba, 0.5)
    soft = tempered_proba(log_proba, 2.0)

    def entropy(p):
        return -(p * p.log()).sum(dim=1)

    assert torch.all(sharp.max(dim=1).values > proba.max(dim=1).values)
    assert torch.all(entropy(sharp) < entropy(proba))
    assert torch.all(entropy(soft) > entropy(proba))
    torch.testing.assert_close(sharp.sum(dim=1), torch.ones(20))
    assert torch.equal(sharp.argmax(dim=1), proba.argmax(dim=1))


def test_kl_of_stacked_logits_matches_scipy_for_every_row_alone():
    """The scoring KL straight from logits equals scipy's on the softmaxes, extreme rows included."""
    from scipy.special import rel_entr, softmax

    from skadv._core import kl_divergence_of_stacked_logits

    rng = np.random.RandomState(0)
    logits = (rng.randn(16, 5) * 3).astype(np.float32)
    logits[1] += 900  # beyond exp's range: shifted by its maximum
    logits[9] -= 900  # its partition would underflow: shifted too
    logits[2, 0] = -1e4  # p underflows to 0 in one class: contributes 0
    expected = rel_entr(softmax(logits[:8].astype(np.float64), axis=1), softmax(logits[8:].astype(np.float64), axis=1))
    x = torch.tensor(logits, requires_grad=True)
    kl = kl_divergence_of_stacked_logits(x)
    np.testing.assert_allclose(kl.detach().numpy(), expected.sum(axis=1), rtol=1e-12, atol=1e-13)
    kl.sum().backward()
    assert torch.isfinite(x.grad).all()
    # A row's value is its own: the same without the extreme rows in the batch.
    ordinary = [0, 3, 4, 5]
    alone = kl_divergence_of_stacked_logits(torch.as_tensor(logits[ordinary + [8 + i for i in ordinary]]))
    np.testing.assert_array_equal(alone.numpy(), kl.detach().numpy()[ordinary])
    # A NaN logit makes its row NaN, not its neighbours; an empty batch gives no rows.
    with_nan = torch.as_tensor(logits[ordinary + [8 + i for i in ordinary]]).clone()
    with_nan[0, 1] = float("nan")
    nan_kl = kl_divergence_of_stacked_logits(with_nan).numpy()
    assert np.isnan(nan_kl[0])
    np.testing.assert_allclose(nan_kl[1:], alone.numpy()[1:], rtol=1e-12)
    assert kl_divergence_of_stacked_logits(torch.empty(0, 5)).shape == (0,)


def test_scores_from_logits_equal_scores_from_log_probabilities(tiny):
    """The default score (fused, from logits) and the log-softmax path agree to float64 rounding."""
    X, clf, ae, _head = tiny
    det = AdversarialAEDetector(clf, ae=ae, epochs=1, random_state=0).fit(X)
    assert det.model_.output == "logits"
    fused = det.adversarial_score(X)
    det.model_.output = "log_proba"  # the generic path, on the same network: its output as log-probabilities
    det.model_.net = nn.Sequential(det.model_.net, nn.LogSoftmax(dim=1))
    np.testing.assert_allclose(fused, det.adversarial_score(X), rtol=1e-5, atol=1e-12)


def test_one_classifier_pass_per_batch(tiny):
    X, clf, ae, _head = tiny
    det = AdversarialAEDetector(
        clf, ae=ae, hidden_layer_kld={"0": 4, "1": 2}, epochs=1, inference_batch_size=5, random_state=0
    ).fit(X)
    calls = []
    handle = det.model_.net.register_forward_hook(lambda module, inputs, output: calls.append(len(output)))
    try:
        det.adversarial_score(X)
        det.correct(X)
    finally:
        handle.remove()
    # ceil(12 / 5) = 3 batches per call, each padded to 8 rows, input and reconstruction stacked.
    assert calls == [16] * 6


def test_training_keeps_the_classifier_in_eval_mode_and_away_from_the_optimizer(tiny):
    X, _, ae, _ = tiny
    clf = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.ReLU(), nn.Linear(4, 3))
    modes = []

    class RecordModes(Callback):
        def on_batch_end(self, net, **kwargs):
            modes.append((net.frozen_model.training, net.frozen_model.net[1].training, net.module_.training))
            assert {id(p) for group in net.optimizer_.param_groups for p in group["params"]} == {
                id(p) for p in net.module_.parameters()
            }

    AdversarialAEDetector(clf, ae=ae, epochs=2, batch_size=6, callbacks=[RecordModes()], random_state=0).fit(X)
    assert modes == [(False, False, True)] * 4


def test_adaptive_attack_differentiates_through_detector(tiny):
    X, clf, ae, head = tiny
    # A heavy hidden-layer weight, so that its teacher's gradient path is visible below.
    det = AdversarialAEDetector(
        clf, ae=ae, hidden_layer_kld={"1": 2}, model_hl=[head], w_model_hl=[50.0], epochs=2, random_state=0
    )
    det.fit(X)
    x = torch.from_numpy(X).requires_grad_(True)
    det._torch_adversarial_score(x).sum().backward()
    assert x.grad is not None and torch.all(torch.isfinite(x.grad)) and x.grad.abs().sum() > 0
    # Every path counts, the hidden-layer teacher h(x) included: autograd matches finite differences.
    direction = torch.from_numpy(np.random.RandomState(1).normal(size=X.shape).astype(np.float32))
    step = 1e-2
    with torch.no_grad():
        x0 = torch.from_numpy(X)
        ahead = det._torch_adversarial_score(x0 + step * direction)
        finite = (ahead - det._torch_adversarial_score(x0 - step * direction)) / (2 * step)
    torch.testing.assert_close((x.grad * direction).sum().double(), finite.sum().double(), rtol=0.05, atol=1e-3)
    X_adv = PGD(det, eps=0.1, max_iter=3, random_state=0).generate(X)
    assert X_adv.shape == X.shape and np.abs(X_adv - X).max() <= 0.1 + 1e-6


# ----------------------------------------------------------------------------- heads and persistence


@pytest.fixture(scope="module")
def fitted_with_heads():
    X, _y = load_digits(return_X_y=True)
    X = (X[:300] / 16.0).astype(np.float32)
    torch.manual_seed(0)
    clf = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    det = AdversarialAEDetector(
        clf, hidden_layer_kld={"1": 6, 2: 4}, w_model_hl=(0.5, 2.0), w_recon=0.1, epochs=3, random_state=0
    )
    return det.fit(X), X


def test_heads_are_trained(fitted_with_heads):
    det, X = fitted_with_heads
    assert det.hidden_layers_ == ("1", "2")
    assert len(det.hidden_heads_) == 2
    # Same seed, so the same initial heads, but a vanishing step: the heads as initialised.
    initial = AdversarialAEDetector(**det.get_params()).set_params(
        epochs=1, optimizer="sgd", lr=1e-30, batch_size=len(X)
    )
    initial.fit(X)
    for trained, untrained in zip(det.hidden_heads_.parameters(), initial.hidden_heads_.parameters()):
        assert trained.shape == untrained.shape
        assert not torch.allclose(trained, untrained)
    # The autoencoder, too, started from the same weights.
    for first, second in zip(initial.ae_.parameters(), det.ae_.parameters()):
        assert not torch.equal(first, second)


def test_correct_uses_reconstruction_on_flagged_rows(fitted_with_heads):
    det, X = fitted_with_heads
    det = copy.deepcopy(det)  # the threshold set below stays in this test
    scores = det.adversarial_score(X)
    det.threshold_ = float(np.median(scores))
    result = det.correct(X)
    with torch.no_grad():
        x = torch.from_numpy(X)
        own = det.model_(x).argmax(dim=1).numpy()
        recon = det.model_(det.ae_(x)).argmax(dim=1).numpy()
    flagged = result.is_adversarial == 1
    assert 0 < flagged.sum() < len(X)
    np.testing.assert_array_equal(flagged, scores > det.threshold_)
    np.testing.assert_array_equal(result.instance_score, scores)
    np.testing.assert_array_equal(result.no_defense, own)
    np.testing.assert_array_equal(result.defense, recon)
    np.testing.assert_array_equal(result.corrected[flagged], recon[flagged])
    np.testing.assert_array_equal(result.corrected[~flagged], own[~flagged])
    np.testing.assert_array_equal(result.is_adversarial, det.detect(X).is_adversarial)


# ----------------------------------------------------------------------------- the user's objects


def test_user_model_and_modules_are_untouched(tiny):
    X, _clf, ae, head = tiny
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.1), nn.ReLU(), nn.Linear(4, 3))
    model[0].bias.requires_grad_(False)
    model.train()
    objects = [model, ae, head]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in objects]
    flags = [[(m.training, [p.requires_grad for p in m.parameters()]) for m in o.modules()] for o in objects]
    AdversarialAEDetector(model, ae=ae, hidden_layer_kld={"2": 2}, model_hl=[head], epochs=3, random_state=0).fit(X)
    for obj, state, flag in zip(objects, before, flags):
        for key, value in obj.state_dict().items():
            assert torch.equal(value, state[key])
        assert [(m.training, [p.requires_grad for p in m.parameters()]) for m in obj.modules()] == flag


def test_encoder_decoder_pair(tiny):
    X, clf, _, _ = tiny
    det = AdversarialAEDetector(clf, encoder_net=nn.Linear(3, 2), decoder_net=nn.Linear(2, 3), epochs=2).fit(X)
    assert det.ae_(torch.from_numpy(X)).shape == X.shape


def test_default_conv_autoencoder_for_images():
    for shape in [(1, 8, 8), (3, 7, 5)]:
        ae = default_autoencoder(shape)
        assert ae(torch.zeros((2,) + shape)).shape == (2,) + shape
    X = np.random.RandomState(0).uniform(size=(20, 49)).astype(np.float32)
    clf = nn.Sequential(nn.Flatten(), nn.Linear(49, 3))
    det = AdversarialAEDetector(clf, input_shape=(1, 7, 7), epochs=2, random_state=0).fit(X)
    assert isinstance(det.ae_[0][0], nn.Conv2d)
    assert det.adversarial_score(X).shape == (20,)


def test_errors(tiny):
    X, clf, _, _ = tiny
    with pytest.raises(NotFittedError, match="AdversarialAEDetector instance is not fitted yet"):
        AdversarialAEDetector(clf).predict(X)
    det = AdversarialAEDetector(clf, epochs=1).fit(X)
    with pytest.raises(ValueError, match="X has 2 features, but AdversarialAEDetector is expecting 3 features"):
        det.predict(X[:, :2])
    with pytest.raises(ValueError, match="Input X contains NaN"):
        det.correct(np.full_like(X, np.nan))
    with pytest.raises(ValueError, match=r"Unsupported model of type LogisticRegression.*no gradient"):
        AdversarialAEDetector(LogisticRegression().fit(X, np.arange(12) % 3), epochs=1).fit(X)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (lambda ae, head: dict(encoder_net=nn.Linear(3, 2)), "encoder_net and decoder_net must be given together"),
        (lambda ae, head: dict(ae=ae, decoder_net=nn.Linear(2, 3)), "Pass either ae or encoder_net"),
        (lambda ae, head: dict(ae=nn.Linear(3, 2)), r"maps rows of shape \(3,\) to \(2,\); it must reproduce"),
        (lambda ae, head: dict(hidden_layer_kld={"nope": 2}), "'nope' is not among the modules of the model"),
        (lambda ae, head: dict(hidden_layer_kld={7: 2}), "layer index 7 is out of range; the model has 3 submodules"),
        (lambda ae, head: dict(hidden_layer_kld={"1": 0}), "hidden_layer_kld dims must be positive ints, got 0"),
        (
            lambda ae, head: dict(hidden_layer_kld={"1": 2}, w_model_hl=[1.0, 2.0]),
            "w_model_hl has 2 weights for 1 hidden layers",
        ),
        (
            lambda ae, head: dict(hidden_layer_kld={"1": 2}, model_hl=[head, head]),
            "model_hl has 2 heads for 1 hidden layers",
        ),
        (lambda ae, head: dict(temperature=0), r"'temperature' parameter of AdversarialAEDetector must be a float"),
        (lambda ae, head: dict(w_recon=-1.0), r"'w_recon' parameter of AdversarialAEDetector must be a float"),
    ],
)
def test_bad_parameters_are_value_errors_naming_them(tiny, params, match):
    X, clf, ae, head = tiny
    with pytest.raises(ValueError, match=match):
        AdversarialAEDetector(clf, epochs=1, **params(ae, head)).fit(X)


# ----------------------------------------------------------------------------- quality on digits


# A PGD perturbation of eps=0.2 is large on 8x8 digits: the output-KL term alone reaches an
# AUROC of about 0.8 here, as reconstructions of attacked digits keep the wrong class. The
# hidden-layer term on the classifier's ReLU layer (index 2, after Flatten and Linear) sees
# the perturbation; with the default convolutional autoencoder it reaches 0.95-0.98 over seeds.
DIGITS_PARAMS = dict(
    input_shape=(1, 8, 8),
    hidden_layer_kld={2: 128},
    w_model_hl=[200.0],
    temperature=0.5,
    epochs=30,
    batch_size=64,
)
DIGITS_MIN_AUROC = 0.95


def test_digits_pgd_detection_and_correction():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    order = np.random.RandomState(0).permutation(len(X))
    X, y = X[order], y[order]
    X_train, y_train, X_test, y_test = X[:1200], y[:1200], X[1200:1500], y[1200:1500]

    torch.manual_seed(0)
    clf = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    fit_classifier(clf, X_train, y_train, epochs=150, lr=0.01, seed=0)

    X_adv = PGD(clf, eps=0.2, random_state=0).generate(X_test, y_test)
    det = AdversarialAEDetector(clf, **DIGITS_PARAMS, random_state=0).fit(X_train)

    clean, attacked = det.correct(X_test), det.correct(X_adv)
    auroc = roc_auc_score(
        np.r_[np.zeros(len(X_test)), np.ones(len(X_adv))],
        np.r_[clean.instance_score, attacked.instance_score],
    )
    assert (clean.no_defense == y_test).mean() > 0.95
    assert auroc >= DIGITS_MIN_AUROC
    assert (attacked.corrected == y_test).mean() > (attacked.no_defense == y_test).mean()
    # Correction costs little on clean data.
    assert (clean.corrected == y_test).mean() > 0.9
