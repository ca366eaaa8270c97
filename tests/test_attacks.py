"""Tests of skadv.attacks: exact formulas, constraints, ART parity, adaptivity."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

from skadv import ModelDistillationDetector
from skadv.attacks import FGSM, PGD, AutoAttack, CarliniWagnerL2, PGDLineSearch
from skadv.attacks._base import BaseAttack
from skadv.metrics import security_evaluation
from skadv.utils import AttackSurface

from _attack_helpers import (
    SurfaceView,
    accuracy,
    train_linear,
    train_mlp,
)


@pytest.fixture(scope="module")
def mlp(shuffled_digits):
    (X, y), _ = shuffled_digits
    return train_mlp(X, y)


@pytest.fixture(scope="module")
def linear(shuffled_digits):
    (X, y), _ = shuffled_digits
    return train_linear(X, y)


@pytest.fixture(scope="module")
def detector(shuffled_digits, mlp):
    (X, _), _ = shuffled_digits
    # alibi-detect's KL score (the detector these attack tests were calibrated on).
    return ModelDistillationDetector(
        mlp, loss_type="kld", epochs=10, batch_size=64, lr=3e-3, random_state=0
    ).fit(X)


def _l2(a, b):
    return np.linalg.norm((a - b).reshape(len(a), -1), axis=1)


def _linf(a, b):
    return np.abs(a - b).reshape(len(a), -1).max(axis=1)


# --------------------------------------------------------------------------- FGSM


def test_fgsm_equals_one_step_formula_on_linear_model(shuffled_digits, linear):
    _, (X, y) = shuffled_digits
    W = linear.weight.detach().numpy().astype(np.float64)
    b = linear.bias.detach().numpy().astype(np.float64)
    logits = X.astype(np.float64) @ W.T + b
    proba = np.exp(logits - logits.max(1, keepdims=True))
    proba /= proba.sum(1, keepdims=True)
    # d CE(Wx + b, y) / dx = W^T (softmax - onehot(y))
    grad = (proba - np.eye(10)[y]) @ W

    eps = np.float32(0.1)
    expected = np.clip(X + eps * np.sign(grad).astype(np.float32), 0, 1)
    np.testing.assert_array_equal(FGSM(linear, eps=0.1).generate(X, y), expected)

    # L2: the unit gradient direction. float32 loses the tiny gradients of
    # near-certain rows (1 - p_y ~ 1e-7), so compare rows with a real loss.
    expected_l2 = np.clip(X + 0.5 * grad / np.linalg.norm(grad, axis=1, keepdims=True), 0, 1)
    uncertain = proba[np.arange(len(y)), y] < 0.99
    assert uncertain.sum() > 50
    X_l2 = FGSM(linear, eps=0.5, norm=2).generate(X, y)
    np.testing.assert_allclose(X_l2[uncertain], expected_l2[uncertain], atol=2e-6)

    # Targeted: one step *down* the loss of the target class.
    target = (y + 1) % 10
    grad_t = (proba - np.eye(10)[target]) @ W
    expected_t = np.clip(X - eps * np.sign(grad_t).astype(np.float32), 0, 1)
    np.testing.assert_array_equal(FGSM(linear, eps=0.1, targeted=True).generate(X, target), expected_t)


def test_fgsm_without_labels_uses_model_predictions(shuffled_digits, linear):
    _, (X, _) = shuffled_digits
    with torch.no_grad():
        pred = linear(torch.as_tensor(X)).argmax(1).numpy()
    np.testing.assert_array_equal(FGSM(linear, eps=0.1).generate(X), FGSM(linear, eps=0.1).generate(X, pred))


# --------------------------------------------------------------------------- PGD constraints


@pytest.mark.parametrize("norm, eps, step", [(np.inf, 0.1, 0.02), (2, 1.0, 0.25)])
def test_pgd_stays_in_eps_ball_and_clip_box(shuffled_digits, mlp, norm, eps, step):
    _, (X, y) = shuffled_digits
    X_adv = PGD(mlp, norm=norm, eps=eps, step_size=step, max_iter=15, random_state=0).generate(X, y)
    dist = _linf(X_adv, X) if norm == np.inf else _l2(X_adv, X)
    assert dist.max() <= eps * (1 + 1e-5)
    assert dist.mean() > 0.5 * eps  # it really moved
    assert X_adv.min() >= 0.0 and X_adv.max() <= 1.0
    assert X_adv.shape == X.shape and X_adv.dtype == np.float32
    clean_acc, adv_acc = accuracy(mlp, X, y), accuracy(mlp, X_adv, y)
    assert clean_acc > 0.9
    assert adv_acc < clean_acc - 0.5


def test_pgd_with_custom_clip_box_and_no_clipping(shuffled_digits, mlp):
    _, (X, y) = shuffled_digits
    # The inputs must lie in the box (see test_attacks_properties.py for inputs outside it).
    X_boxed = np.clip(X, 0.1, 0.8)
    X_adv = PGD(mlp, eps=0.3, step_size=0.05, max_iter=5, clip_values=(0.1, 0.8), random_state=0).generate(X_boxed, y)
    assert X_adv.min() >= 0.1 - 1e-7 and X_adv.max() <= 0.8 + 1e-7
    X_free = PGD(mlp, eps=0.3, step_size=0.05, max_iter=5, clip_values=None, random_state=0).generate(X, y)
    assert X_free.min() < 0.0 and _linf(X_free, X).max() <= 0.3 + 1e-6


def test_pgd_random_state_reproducible_and_float64_kept(shuffled_digits, mlp):
    _, (X, y) = shuffled_digits
    a = PGD(mlp, eps=0.1, max_iter=3, random_state=7).generate(X[:20], y[:20])
    b = PGD(mlp, eps=0.1, max_iter=3, random_state=7).generate(X[:20], y[:20])
    c = PGD(mlp, eps=0.1, max_iter=3, random_state=8).generate(X[:20], y[:20])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    out = PGD(mlp, eps=0.1, max_iter=1, random_state=0).generate(X[:5].astype(np.float64))
    assert out.dtype == np.float64


@pytest.mark.parametrize("attack", [PGD, CarliniWagnerL2])
def test_targeted_attack_reaches_target_class(shuffled_digits, linear, attack):
    _, (X, y) = shuffled_digits
    X, y = X[:100], y[:100]
    target = (y + 3) % 10
    if attack is PGD:
        atk = PGD(linear, eps=0.5, step_size=0.05, max_iter=30, targeted=True, random_state=0)
    else:
        atk = CarliniWagnerL2(linear, targeted=True, initial_const=1.0, max_iter=60, learning_rate=0.1)
    X_adv = atk.generate(X, target)
    with torch.no_grad():
        pred = linear(torch.as_tensor(X_adv)).argmax(1).numpy()
    assert np.mean(pred == target) >= 0.95


def test_return_best_keeps_successes_lost_by_last_iterate(shuffled_digits, mlp):
    _, (X, y) = shuffled_digits
    common = dict(eps=0.05, step_size=0.02, max_iter=20, random_state=0)
    best = PGD(mlp, **common).generate(X, y)
    last = PGD(mlp, return_best=False, **common).generate(X, y)
    assert accuracy(mlp, best, y) <= accuracy(mlp, last, y)


def test_batching_does_not_change_the_result(shuffled_digits, mlp):
    _, (X, y) = shuffled_digits
    common = dict(norm=2, eps=1.0, step_size=0.2, max_iter=5, random_start=False)
    one = PGD(mlp, batch_size=512, **common).generate(X[:50], y[:50])
    many = PGD(mlp, batch_size=7, **common).generate(X[:50], y[:50])
    # float32 gradients differ in the last bits between batchings; 1e-4 is far below eps=1.0
    np.testing.assert_allclose(one, many, atol=1e-4)


# --------------------------------------------------------------------------- ART parity

art = pytest.importorskip("art")


@pytest.fixture(scope="module")
def art_classifier(mlp):
    from art.estimators.classification import PyTorchClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PyTorchClassifier(
            mlp, loss=torch.nn.CrossEntropyLoss(), input_shape=(64,), nb_classes=10, clip_values=(0.0, 1.0)
        )


@pytest.mark.parametrize("norm, eps", [(np.inf, 0.1), (2, 1.0)])
def test_fgsm_matches_art_fast_gradient_method(shuffled_digits, mlp, art_classifier, norm, eps):
    from art.attacks.evasion import FastGradientMethod

    _, (X, y) = shuffled_digits
    ours = FGSM(mlp, eps=eps, norm=norm).generate(X, y)
    theirs = FastGradientMethod(art_classifier, norm=norm, eps=eps).generate(X, y=np.eye(10)[y])
    if norm == np.inf:
        np.testing.assert_array_equal(ours, theirs)
    else:
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    # Without labels both use the model's predictions.
    np.testing.assert_allclose(
        FGSM(mlp, eps=eps, norm=norm).generate(X),
        FastGradientMethod(art_classifier, norm=norm, eps=eps).generate(X),
        atol=1e-6,
    )


@pytest.mark.parametrize("norm, eps, step", [(np.inf, 0.1, 0.01), (2, 0.5, 0.05)])
@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_accuracy_under_attack_matches_art(shuffled_digits, mlp, art_classifier, norm, eps, step, random_start):
    from art.attacks.evasion import ProjectedGradientDescent

    (X_train, y_train), (X, y) = shuffled_digits
    if random_start:
        # Random starts differ between libraries: compare on more inputs.
        X, y = np.r_[X, X_train[:300]], np.r_[y, y_train[:300]]
    np.random.seed(0)  # ART draws its random start from numpy's global RNG
    theirs = ProjectedGradientDescent(
        art_classifier, norm=norm, eps=eps, eps_step=step, max_iter=20,
        num_random_init=int(random_start), verbose=False,
    ).generate(X, y=np.eye(10)[y])
    ours = PGD(
        mlp, norm=norm, eps=eps, step_size=step, max_iter=20, random_start=random_start, random_state=0
    ).generate(X, y)
    acc_ours, acc_theirs = accuracy(mlp, ours, y), accuracy(mlp, theirs, y)
    assert 0.05 < acc_theirs < 0.9  # a regime where the comparison means something
    assert abs(acc_ours - acc_theirs) <= 0.02


# --------------------------------------------------------------------------- C&W and line search


def test_carlini_wagner_finds_smaller_l2_perturbations_than_pgd(shuffled_digits, mlp):
    _, (X, y) = shuffled_digits
    X, y = X[:100], y[:100]
    pgd = PGD(mlp, norm=2, eps=2.0, step_size=0.2, max_iter=30, random_state=0).generate(X, y)
    cw = CarliniWagnerL2(mlp, initial_const=1.0, binary_search_steps=5, max_iter=60, learning_rate=0.05).generate(X, y)
    with torch.no_grad():
        fooled_pgd = mlp(torch.as_tensor(pgd)).argmax(1).numpy() != y
        fooled_cw = mlp(torch.as_tensor(cw)).argmax(1).numpy() != y
    assert fooled_cw.mean() >= fooled_pgd.mean() - 0.02  # equal success
    both = fooled_pgd & fooled_cw
    assert both.sum() >= 80
    l2_pgd, l2_cw = _l2(pgd, X)[both], _l2(cw, X)[both]
    assert np.mean(l2_cw) < 0.6 * np.mean(l2_pgd)
    assert np.mean(l2_cw < l2_pgd) > 0.9
    # Failures are returned unchanged.
    np.testing.assert_array_equal(cw[~fooled_cw], X[~fooled_cw])


def test_carlini_wagner_eps_budget_reverts_larger_perturbations(shuffled_digits, mlp):
    _, (X, y) = shuffled_digits
    params = dict(initial_const=1.0, binary_search_steps=3, max_iter=40, learning_rate=0.05)
    free = CarliniWagnerL2(mlp, **params).generate(X[:50], y[:50])
    budget = np.median(_l2(free, X[:50]))
    bounded = CarliniWagnerL2(mlp, eps=budget, **params).generate(X[:50], y[:50])
    assert _l2(bounded, X[:50]).max() <= budget + 1e-5
    assert np.mean(_l2(bounded, X[:50]) == 0) >= 0.4


def test_pgd_line_search_decreases_objective_monotonically(shuffled_digits, mlp):
    _, (X, y) = shuffled_digits
    attack = PGDLineSearch(mlp, eps=1.5, step_size=0.05, max_iter=30, trace=True)
    X_adv = attack.generate(X[:100], y[:100])
    assert _l2(X_adv, X[:100]).max() <= 1.5 + 1e-5
    assert X_adv.min() >= 0 and X_adv.max() <= 1
    loss = attack.trace_.loss
    assert loss.shape == (attack.trace_.n_iter, 100)
    # The line search only accepts improvements: the margin never goes up.
    assert np.all(np.diff(loss, axis=0) <= 1e-5)
    assert np.mean(loss[-1] < 0) > 0.9  # negative margin = misclassified
    assert accuracy(mlp, X_adv, y[:100]) < 0.1


def test_margin_objective_switches_to_reject_score_while_rejected():
    class _Reject:
        reject_index = 3

    attack = PGDLineSearch(torch.nn.Identity())
    logits = torch.tensor(
        [
            [5.0, 1.0, 2.0, 0.0],  # classified as the true class 0
            [1.0, 2.0, 0.5, 4.0],  # rejected: objective = reject score - best other
            [1.0, 3.0, 0.5, 2.0],  # adversarial and accepted: negative
        ]
    )
    y = torch.tensor([0, 0, 0])
    values = attack._margin_objective(_Reject(), y)(logits)
    np.testing.assert_allclose(values.numpy(), [5.0 - 2.0, 4.0 - 2.0, 2.0 - 3.0])


# --------------------------------------------------------------------------- targets


def test_skorch_net_target_matches_its_module(shuffled_digits):
    from skorch import NeuralNetClassifier

    (X_train, y_train), (X, y) = shuffled_digits
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    # skorch's default NLLLoss expects probabilities from the module.
    net = NeuralNetClassifier(
        torch.nn.Sequential(body, torch.nn.Softmax(dim=-1)), max_epochs=5, lr=0.1, train_split=None, verbose=0
    ).fit(X_train, y_train)
    logits_model = net.module_[0]
    ours = FGSM(net, eps=0.1).generate(X, y)
    reference = FGSM(logits_model, eps=0.1).generate(X, y)
    assert np.mean(ours == reference) > 0.999
    from sklearn.frozen import FrozenEstimator

    np.testing.assert_array_equal(FGSM(FrozenEstimator(net), eps=0.1).generate(X, y), ours)


def test_user_model_is_not_modified(shuffled_digits, mlp):
    _, (X, y) = shuffled_digits
    model = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 10))
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    PGD(model, eps=0.1, max_iter=2, random_state=0).generate(X[:10], y[:10])
    assert model.training
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_input_shape_reshapes_rows_for_conv_models(shuffled_digits):
    _, (X, _y) = shuffled_digits
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 10)
    )
    X_adv = PGD(cnn, eps=0.1, max_iter=3, input_shape=(1, 8, 8), random_state=0).generate(X[:20])
    assert X_adv.shape == (20, 64) and _linf(X_adv, X[:20]).max() <= 0.1 + 1e-6
    X_img = X[:20].reshape(20, 1, 8, 8)
    X_adv_img = PGD(cnn, eps=0.1, max_iter=3, random_state=0).generate(X_img)
    assert X_adv_img.shape == (20, 1, 8, 8)
    np.testing.assert_allclose(X_adv_img.reshape(20, 64), X_adv, atol=1e-6)


def test_trace_records_every_iteration(shuffled_digits, mlp):
    _, (X, y) = shuffled_digits
    attack = PGD(mlp, eps=0.1, step_size=0.01, max_iter=10, batch_size=32, random_state=0, trace=True)
    attack.generate(X[:50], y[:50])
    trace = attack.trace_
    assert trace.n_iter == 11
    for key in ("loss", "true_confidence", "max_other_confidence", "success"):
        assert trace[key].shape == (11, 50)
    assert np.all(np.isnan(trace.reject_confidence))  # no detector
    assert trace.loss[-1].mean() > trace.loss[0].mean() + 1.0
    assert trace.true_confidence[-1].mean() < trace.true_confidence[0].mean() - 0.3
    assert trace.success[-1].mean() > trace.success[0].mean()
    assert not hasattr(PGD(mlp), "trace_")


def test_trace_records_raw_scores(shuffled_digits, linear, detector):
    _, (X, y) = shuffled_digits
    X, y = X[:40], y[:40]
    attack = FGSM(linear, eps=0.1, trace=True)
    X_adv = attack.generate(X, y)
    trace = attack.trace_
    assert trace.scores_are_logits is True
    rows = np.arange(len(y))
    for i, x in enumerate([X, X_adv]):  # FGSM records the clean and the attacked point
        with torch.no_grad():
            logits = linear(torch.as_tensor(x)).numpy().astype(np.float64)
        others = logits.copy()
        others[rows, y] = -np.inf
        np.testing.assert_allclose(trace.true_score[i], logits[rows, y], rtol=1e-6)
        np.testing.assert_allclose(trace.max_other_score[i], others.max(axis=1), rtol=1e-6)
        proba = np.exp(logits - logits.max(axis=1, keepdims=True))
        proba /= proba.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(trace.true_confidence[i], proba[rows, y], rtol=1e-5)
    assert np.all(np.isnan(trace.reject_score))

    # Adaptive attack on a BaseDetector: log-probabilities plus the "flagged" logit
    # max(log p) + score - threshold.
    attack = FGSM(detector, eps=0.1, trace=True)
    attack.generate(X, y)
    trace = attack.trace_
    assert trace.scores_are_logits is True
    with torch.no_grad():
        log_proba = detector.model_(torch.as_tensor(X)).numpy().astype(np.float64)
    flagged = log_proba.max(axis=1) + detector.adversarial_score(X) - detector.threshold_
    np.testing.assert_allclose(trace.true_score[0], log_proba[rows, y], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(trace.reject_score[0], flagged, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda m: PGD(m, eps=-1.0), "eps"),
        (lambda m: PGD(m, norm=3), "norm"),
        (lambda m: PGD(m, step_size=0), "step_size"),
        (lambda m: FGSM(m, batch_size=0), "batch_size"),
        (lambda m: CarliniWagnerL2(m, binary_search_steps=0), "binary_search_steps"),
        (lambda m: PGD(m, clip_values=(1.0, 0.0)), "clip_values"),
        (lambda m: PGD(m, input_shape=(1, 7, 7)), "input_shape"),
    ],
)
def test_invalid_parameters_raise_value_error(shuffled_digits, mlp, make, match):
    _, (X, _) = shuffled_digits
    with pytest.raises(ValueError, match=match):
        make(mlp).generate(X[:5])


def test_invalid_targets_and_labels_raise_clear_errors(shuffled_digits, mlp):
    (X_train, y_train), (X, y) = shuffled_digits
    logreg = LogisticRegression(max_iter=200).fit(X_train, y_train)
    with pytest.raises(ValueError, match="no gradient"):
        FGSM(logreg).generate(X[:5])
    with pytest.raises(ValueError, match="targeted attack needs"):
        FGSM(mlp, targeted=True).generate(X[:5])
    with pytest.raises(ValueError, match="class indices"):
        FGSM(mlp).generate(X[:5], np.full(5, 12))
    with pytest.raises(ValueError, match="inconsistent"):
        FGSM(mlp).generate(X[:5], y[:4])
    det = ModelDistillationDetector(logreg, epochs=1, random_state=0).fit(X_train[:200])
    with pytest.raises(ValueError, match="not differentiable"):
        PGD(det).generate(X[:5])


def test_attacks_are_sklearn_style_parameter_holders(mlp):
    attack = PGD(mlp, eps=0.2)
    assert isinstance(attack, BaseAttack)
    assert attack.get_params()["eps"] == 0.2
    assert attack.set_params(max_iter=3).max_iter == 3
    assert "PGD(" in repr(attack)


# --------------------------------------------------------------------------- adaptive


def _evasion(detector, model, X_adv, y):
    with torch.no_grad():
        wrong = model(torch.as_tensor(X_adv)).argmax(1).numpy() != y
    flagged = detector.predict(X_adv) == -1
    return float(np.mean(wrong & ~flagged)), float(np.mean(flagged))


def test_adaptive_pgd_evades_model_distillation_detector(shuffled_digits, mlp, detector):
    _, (X, y) = shuffled_digits
    params = dict(eps=0.1, step_size=0.01, max_iter=40, random_state=0)
    plain = PGD(detector, adaptive=False, **params).generate(X, y)
    adaptive = PGD(detector, **params).generate(X, y)
    # Non-adaptive PGD attacks the classifier alone: as strong as on the bare model.
    bare = PGD(mlp, **params).generate(X, y)
    # Same random start; the estimator's log-probabilities and the bare logits differ in float
    # rounding only, which 40 signed steps can amplify on a few borderline rows.
    assert abs(accuracy(mlp, plain, y) - accuracy(mlp, bare, y)) <= 0.02
    evade_plain, flagged_plain = _evasion(detector, mlp, plain, y)
    evade_adaptive, flagged_adaptive = _evasion(detector, mlp, adaptive, y)
    # The detector looks useful against the non-adaptive attack...
    assert flagged_plain > 0.3
    # ...but the adaptive attack gets clearly more inputs misclassified AND unflagged.
    assert evade_adaptive >= evade_plain + 0.15
    assert flagged_adaptive < flagged_plain


def test_adaptive_line_search_and_carlini_wagner_evade_detector(shuffled_digits, mlp, detector):
    _, (X, y) = shuffled_digits
    X, y = X[:150], y[:150]
    for attack_cls, params in [
        (PGDLineSearch, dict(eps=1.0, max_iter=20)),
        (CarliniWagnerL2, dict(initial_const=1.0, binary_search_steps=3, max_iter=40, learning_rate=0.05)),
    ]:
        plain, _ = _evasion(detector, mlp, attack_cls(detector, adaptive=False, **params).generate(X, y), y)
        adaptive, flagged = _evasion(detector, mlp, attack_cls(detector, **params).generate(X, y), y)
        assert adaptive > plain, attack_cls.__name__
        assert flagged < 0.15, attack_cls.__name__


def test_adaptive_trace_reports_reject_confidence(shuffled_digits, detector):
    _, (X, y) = shuffled_digits
    attack = PGD(detector, eps=0.1, max_iter=5, random_state=0, trace=True)
    attack.generate(X[:20], y[:20])
    rc = attack.trace_.reject_confidence
    assert rc.shape == (6, 20) and np.all((rc >= 0) & (rc <= 1))


def test_stochastic_detector_gradients_are_averaged_over_eot_samples(shuffled_digits, detector):
    _, (X, y) = shuffled_digits
    calls = []

    def counting(forward):
        def wrapped(x):
            calls.append(x.shape[0])
            return forward(x)

        return wrapped

    # The surface says the score is randomized: every evaluation is averaged over draws.
    det = SurfaceView(detector, counting, stochastic=True)
    FGSM(det, eps=0.1, eot_samples=5).generate(X[:10], y[:10])
    # 5 draws each for the gradient, the loss at the adversarial point and the final
    # success judgement (the surface knows its width: no probe of the output).
    assert calls == [10] * 15
    calls.clear()
    FGSM(det, eps=0.1, eot_samples=5, adaptive=False).generate(X[:10], y[:10])
    assert calls == []  # the classifier alone is deterministic


class _SqueezeDetector:
    """A third-party detector (no skadv base class), feature-squeezing style.

    It flags rows whose class probabilities change much when the image is blurred
    (3x3 mean filter), and takes part in skadv's attacks by implementing the attack
    protocol alone.
    """

    def __init__(self, model, X_clean, flag_share=0.05):
        self.model = model
        with torch.no_grad():
            scores = self._score(torch.as_tensor(X_clean)).numpy()
        self.threshold = float(np.quantile(scores, 1 - flag_share))

    def _score(self, x):
        blurred = torch.nn.functional.avg_pool2d(x.reshape(-1, 1, 8, 8), 3, stride=1, padding=1).reshape(x.shape)
        return (torch.softmax(self.model(x), dim=1) - torch.softmax(self.model(blurred), dim=1)).abs().sum(dim=1)

    def predict(self, X):
        with torch.no_grad():
            return np.where(self._score(torch.as_tensor(X)).numpy() > self.threshold, -1, 1)

    def attack_surface(self):
        def forward(x):
            logits = self.model(x)
            flagged = logits.max(dim=1).values + self._score(x) - self.threshold
            return torch.cat([logits, flagged[:, None]], dim=1)

        return AttackSurface(
            forward=forward, classifier=self.model, n_classes=10, reject_index=10, device=torch.device("cpu")
        )


def test_third_party_detector_is_attacked_adaptively_through_its_attack_surface(shuffled_digits, mlp):
    (X_train, _), (X, y) = shuffled_digits
    det = _SqueezeDetector(mlp, X_train)
    params = {"eps": 0.2, "step_size": 0.02, "max_iter": 20, "random_state": 0}
    result = PGD(det, **params).run(X, y)
    with torch.no_grad():
        wrong = mlp(torch.as_tensor(result.X_adv)).argmax(1).numpy() != y
    flagged = det.predict(result.X_adv) == -1
    # Success is judged on the deployed decision: misclassified and not flagged.
    np.testing.assert_array_equal(result.success, wrong & ~flagged)
    # The non-adaptive attack ignores the detector, and gets flagged far more often.
    plain = PGD(det, adaptive=False, **params).generate(X, y)
    with torch.no_grad():
        plain_wrong = mlp(torch.as_tensor(plain)).argmax(1).numpy() != y
    plain_flagged = det.predict(plain) == -1
    assert flagged.mean() < plain_flagged.mean() - 0.1
    assert np.mean(wrong & ~flagged) > np.mean(plain_wrong & ~plain_flagged) + 0.1
    # Metrics use the same protocol.
    res = security_evaluation(det, PGD, X, y, [0.0, 0.2], failure_checks=False, step_size=0.02, max_iter=20,
                              random_state=0)
    assert res.adaptive is True and res.evasion_rate[1] == pytest.approx(np.mean(wrong & ~flagged))


def test_attack_surface_contract(shuffled_digits, detector):
    _, (X, _) = shuffled_digits
    surface = detector.attack_surface()
    assert isinstance(surface, AttackSurface)
    described = (surface.n_classes, surface.reject_index, surface.stochastic, surface.outputs_are_logits)
    assert described == (10, 10, False, True)
    scores = surface.scores(X)
    # argmax == K exactly where the detector flags.
    np.testing.assert_array_equal(scores.argmax(1) == 10, detector.predict(X) == -1)
    with torch.no_grad():
        np.testing.assert_allclose(scores[:, :10], detector.model_(torch.as_tensor(X)).numpy(), rtol=1e-6)
    plain = surface.classifier_only()
    assert plain.reject_index is None and plain.scores(X).shape == (len(X), 10)
    with pytest.raises(NotFittedError):
        ModelDistillationDetector(torch.nn.Linear(64, 10)).attack_surface()
    with pytest.raises(ValueError, match="reject_index must be n_classes"):
        AttackSurface(forward=None, classifier=None, n_classes=3, reject_index=2, device="cpu")
    with pytest.raises(ValueError, match=r"must return a skadv\.utils\.AttackSurface"):
        PGD(_NoSurface()).generate(X[:2])


class _NoSurface:
    def attack_surface(self):
        return "not a surface"


def test_failure_warnings_point_at_the_callers_line():
    from skadv.attacks import AttackFailureWarning, check_attack_failure

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    X = np.random.RandomState(0).rand(20, 16).astype(np.float32)
    attack = PGD(model, eps=1e-4, max_iter=1, input_shape=(1, 4, 4), random_state=0)
    with pytest.warns(AttackFailureWarning, match="'unbounded'") as record:
        check_attack_failure(attack, X)
    # Not skadv's own module nor scikit-learn's validate_params wrapper: this test's line.
    assert {w.filename for w in record} == {__file__}
    with pytest.warns(AttackFailureWarning, match="'unbounded'") as record:
        y = model(torch.as_tensor(X)).argmax(1).numpy()
        security_evaluation(model, attack, X, y, [0.0, 1e-4], failure_checks={"unbounded": True})
    assert {w.filename for w in record} == {__file__}


@pytest.mark.parametrize("attack_class", [PGD, AutoAttack])
def test_other_libraries_call_forms_fail_with_the_skadv_equivalent(shuffled_digits, linear, attack_class):
    (X, y), _ = shuffled_digits
    X, y = X[:6], y[:6]
    attack = attack_class(linear, eps=0.1, max_iter=2, random_state=0)
    with pytest.raises(ValueError, match=r"unsupported keyword\(s\) \['mask'\].*no mask"):
        attack.generate(X, y, mask=np.ones_like(X))
    one_hot = np.eye(10)[y]
    with pytest.raises(ValueError, match=r"one class label per row, shape \(6,\); got shape \(6, 10\).*argmax"):
        attack.generate(X, one_hot)
