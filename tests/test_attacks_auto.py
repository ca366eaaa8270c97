"""APGD, Square, AutoAttack, OrthogonalPGD and the attack-failure checks.

Parity with ART on the same undefended digits model, exact loss formulas, thread safety of
a shared attack instance, the ensemble's per-row guarantee, and each failure check firing
on a deliberately masked model while staying silent on the plain one.
"""

import copy
import dataclasses
import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from sklearn.base import clone

from skadv import DeepNeuralRejection, ModelDistillationDetector
from skadv.attacks import (
    APGD,
    PGD,
    AttackFailureWarning,
    AutoAttack,
    OrthogonalPGD,
    Square,
    check_attack_failure,
)
from skadv.attacks._apgd import _checkpoints
from skadv.attacks._square import _BlockPlanner
from skadv.metrics import deployed_predictions
from skadv.rejection._kernels import RBFKernelMachine
from skadv.utils import AttackSurface

from _attack_helpers import SurfaceView, train_module

SHAPE = (1, 8, 8)


class _ZeroGradQuantize(torch.nn.Module):
    """Rounds inputs to ``levels`` grey levels: piecewise constant, so every input gradient is zero."""

    def __init__(self, levels=4):
        super().__init__()
        self.levels = levels

    def forward(self, x):
        return torch.round(x * self.levels) / self.levels


@pytest.fixture(scope="module")
def mlp(shuffled_digits):
    (X, y), _ = shuffled_digits
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    return train_module(body, X, y)


@pytest.fixture(scope="module")
def masked(shuffled_digits):
    """The same architecture trained behind a zero-gradient input quantisation."""
    (X, y), _ = shuffled_digits
    torch.manual_seed(0)
    body = torch.nn.Sequential(
        _ZeroGradQuantize(), torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )
    return train_module(body, X, y)


@pytest.fixture(scope="module")
def detector(shuffled_digits, mlp):
    (X, _), _ = shuffled_digits
    # alibi-detect's KL score (the detector these attack tests were calibrated on).
    return ModelDistillationDetector(
        mlp, loss_type="kld", epochs=10, batch_size=64, lr=3e-3, random_state=0, input_shape=SHAPE
    ).fit(X)


@pytest.fixture(scope="module")
def art_classifier(mlp):
    art = pytest.importorskip("art")  # noqa: F841
    from art.estimators.classification import PyTorchClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PyTorchClassifier(
            mlp, loss=torch.nn.CrossEntropyLoss(), input_shape=SHAPE, nb_classes=10, clip_values=(0.0, 1.0)
        )


def _accuracy(model, X, y):
    with torch.no_grad():
        return float((model(torch.as_tensor(X, dtype=torch.float32).reshape(-1, *SHAPE)).argmax(1).numpy() == y).mean())


# --------------------------------------------------------------------------- per-call state


@pytest.mark.parametrize(
    "make",
    [
        lambda m: PGD(m, eps=0.1, step_size=0.02, max_iter=5, random_state=0),
        lambda m: APGD(m, eps=0.1, max_iter=5, random_state=0, input_shape=SHAPE),
        lambda m: Square(m, eps=0.1, max_iter=20, random_state=0, input_shape=SHAPE),
    ],
    ids=["PGD", "APGD", "Square"],
)
def test_shared_attack_instance_equals_per_thread_clones(shuffled_digits, mlp, make):
    _, (X, y) = shuffled_digits
    shared = make(mlp)
    before = dict(vars(shared))
    sizes = [1, 3, 7, 16, 5, 2, 11, 8]

    def work(i):
        rows = slice(10 * i, 10 * i + sizes[i])
        mine = clone(shared)
        return [(shared.run(X[rows], y[rows]).X_adv, mine.run(X[rows], y[rows]).X_adv) for _ in range(4)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(8)))
    for per_thread in results:
        for from_shared, from_clone in per_thread:
            np.testing.assert_array_equal(from_shared, from_clone)
    assert vars(shared).keys() == before.keys()  # run() stores nothing on the attack


def test_random_draws_do_not_depend_on_batch_composition(shuffled_digits, mlp):
    _, (X, y) = shuffled_digits
    attack = APGD(mlp, eps=0.1, max_iter=1, momentum=1.0, random_state=3, input_shape=SHAPE)
    whole = attack.run(X[:40], y[:40]).X_adv
    part = clone(attack).set_params(batch_size=7).run(X[20:40], y[20:40]).X_adv
    np.testing.assert_allclose(part, whole[20:40], atol=1e-6)
    other_seed = clone(attack).set_params(random_state=4).run(X[:40], y[:40]).X_adv
    assert not np.allclose(other_seed, whole)


def test_n_iter_counts_iterations_summed_over_restarts(shuffled_digits, mlp):
    _, (X, y) = shuffled_digits
    assert PGD(mlp, eps=0.1, max_iter=7, random_state=0).run(X[:5], y[:5]).n_iter == 7
    one = APGD(mlp, eps=0.01, max_iter=10, random_state=0, input_shape=SHAPE).run(X[:20], y[:20])
    two = APGD(mlp, eps=0.01, max_iter=10, n_restarts=2, random_state=0, input_shape=SHAPE).run(X[:20], y[:20])
    assert one.n_iter == 10  # eps=0.01 leaves unbroken rows: all iterations run
    assert two.n_iter == 20
    attack = APGD(mlp, eps=0.01, max_iter=10, random_state=0, input_shape=SHAPE)
    attack.generate(X[:20], y[:20])
    assert attack.n_iter_ == 10


# --------------------------------------------------------------------------- APGD


def test_apgd_checkpoints_follow_the_paper():
    # p = 0, .22, .41, .57, .70, .80, .87, .93, .99 (p_{j+1} = p_j + max(p_j - p_{j-1} - .03, .06))
    assert _checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]


def test_apgd_dlr_and_margin_losses_match_hand_computation():
    class _Plain:
        reject_index = None
        n_classes = 5

    class _Adaptive:
        reject_index = 4
        n_classes = 4

    z = torch.tensor([[3.0, 1.0, 2.5, 0.5, -1.0], [0.0, 4.0, 1.0, 2.0, 3.0]])
    y = torch.tensor([0, 2])
    attack = APGD(torch.nn.Identity(), loss="dlr")
    # DLR = -(z_y - max_{j != y} z_j) / (z_(1) - z_(3))
    expected = [-(3.0 - 2.5) / (3.0 - 1.0), -(1.0 - 4.0) / (4.0 - 2.0)]
    np.testing.assert_allclose(attack._objective(_Plain(), y)(z).numpy(), expected, rtol=1e-6)
    # Adaptive: the bad score is max(z_y, z_rejected); the others exclude the reject column.
    expected = [-(3.0 - 2.5) / (3.0 - 1.0), -(3.0 - 4.0) / (4.0 - 2.0)]
    np.testing.assert_allclose(attack._objective(_Adaptive(), y)(z).numpy(), expected, rtol=1e-6)
    # Targeted DLR: -(max_{j != t} z_j - z_t) / (z_(1) - (z_(3) + z_(4)) / 2)
    targeted = APGD(torch.nn.Identity(), loss="dlr", targeted=True)
    expected = [-(2.5 - 3.0) / (3.0 - (1.0 + 0.5) / 2), -(4.0 - 1.0) / (4.0 - (2.0 + 1.0) / 2)]
    np.testing.assert_allclose(targeted._objective(_Plain(), y)(z).numpy(), expected, rtol=1e-6)
    margin = APGD(torch.nn.Identity(), loss="margin")
    np.testing.assert_allclose(margin._objective(_Adaptive(), y)(z).numpy(), [-(3.0 - 2.5), -(3.0 - 4.0)])


@pytest.mark.parametrize("eps", [0.03, 0.06, 0.1])
def test_apgd_robust_accuracy_matches_art(shuffled_digits, mlp, art_classifier, eps):
    from art.attacks.evasion import AutoProjectedGradientDescent

    _, (X, y) = shuffled_digits
    np.random.seed(0)  # ART draws its random start from numpy's global RNG
    theirs = AutoProjectedGradientDescent(
        art_classifier, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=50, nb_random_init=1,
        batch_size=300, verbose=False,
    ).generate(X.reshape(-1, *SHAPE), y=y)
    ours = APGD(mlp, eps=eps, max_iter=50, random_state=0, input_shape=SHAPE).generate(X, y)
    assert np.abs(ours - X).max() <= eps + 1e-6 and ours.min() >= 0 and ours.max() <= 1
    acc_ours, acc_theirs = _accuracy(mlp, ours, y), _accuracy(mlp, theirs, y)
    assert 0.1 < acc_theirs < 0.9  # a regime where the comparison means something
    assert abs(acc_ours - acc_theirs) <= 0.01


def test_apgd_l2_stays_in_ball_and_beats_pgd(shuffled_digits, mlp):
    _, (X, y) = shuffled_digits
    ours = APGD(mlp, eps=0.6, norm=2, max_iter=50, random_state=0, input_shape=SHAPE).generate(X, y)
    assert np.linalg.norm(ours - X, axis=1).max() <= 0.6 + 1e-5
    pgd = PGD(mlp, eps=0.6, norm=2, step_size=0.06, max_iter=50, random_state=0).generate(X, y)
    assert _accuracy(mlp, ours, y) <= _accuracy(mlp, pgd, y)


# --------------------------------------------------------------------------- Square


class _ReferencePlacement(Square):
    """Square with the reference implementations' window placement.

    They draw a window's corner with ``randint(0, side - size)``, whose upper bound is
    exclusive: a window never touches the last row or column (Square itself draws all
    ``side - size + 1`` positions).
    """

    def _corners(self, run, n, size, height, width, device):
        starts_h = (run.uniform((n,), device) * max(height - size, 1)).long()
        starts_w = (run.uniform((n,), device) * max(width - size, 1)).long()
        return starts_h, starts_w


def test_square_matches_art_at_equal_queries(shuffled_digits, mlp, art_classifier):
    from art.attacks.evasion import SquareAttack

    _, (X, y) = shuffled_digits
    np.random.seed(0)
    theirs = SquareAttack(
        art_classifier, norm=np.inf, eps=0.1, max_iter=300, p_init=0.8, batch_size=300, verbose=False
    ).generate(X.reshape(-1, *SHAPE), y=y)
    acc_theirs = _accuracy(mlp, theirs, y)
    reference = _ReferencePlacement(mlp, eps=0.1, max_iter=300, random_state=0, input_shape=SHAPE).generate(X, y)
    assert abs(_accuracy(mlp, reference, y) - acc_theirs) <= 0.03
    ours = Square(mlp, eps=0.1, max_iter=300, random_state=0, input_shape=SHAPE).generate(X, y)
    assert np.abs(ours - X).max() <= 0.1 + 1e-6
    assert _accuracy(mlp, ours, y) <= acc_theirs + 0.03  # windows everywhere: at least as strong


def test_square_l2_stays_in_ball_and_breaks_inputs(shuffled_digits, mlp):
    _, (X, y) = shuffled_digits
    X, y = X[:100], y[:100]
    result = Square(mlp, eps=1.0, norm=2, max_iter=200, random_state=0, input_shape=SHAPE).run(X, y)
    assert np.linalg.norm(result.X_adv - X, axis=1).max() <= 1.0 + 1e-5
    assert result.X_adv.min() >= 0 and result.X_adv.max() <= 1
    assert _accuracy(mlp, result.X_adv, y) < _accuracy(mlp, X, y) - 0.3
    np.testing.assert_array_equal(result.success, _predict(mlp, result.X_adv) != y)


@pytest.mark.parametrize(
    "params", [{"eps": 0.05}, {"eps": 0.04, "n_restarts": 2}, {"eps": 0.5, "norm": 2}], ids=["linf", "restarts", "l2"]
)
@pytest.mark.parametrize("block", [None, 1, 7])
def test_square_blocks_of_queries_give_the_one_query_a_pass_results(shuffled_digits, mlp, params, block, monkeypatch):
    # With trace=True Square runs one iteration per pass for the whole batch (it records every
    # iteration); without, it evaluates blocks of future proposals in one pass: the planner's
    # blocks (None) or fixed ones. Same points.
    _, (X, y) = shuffled_digits
    X, y = X[:80], y[:80]
    passes = []
    hook = mlp.register_forward_hook(lambda module, args, out: passes.append(len(args[0])))
    if block is not None:
        monkeypatch.setattr(_BlockPlanner, "block", lambda self, n_rows: block)
    try:
        blocks = Square(mlp, max_iter=150, random_state=0, input_shape=SHAPE, **params).run(X, y)
        n_block_passes = len(passes)
        one = Square(mlp, max_iter=150, random_state=0, input_shape=SHAPE, trace=True, **params).run(X, y)
        n_one_passes = len(passes) - n_block_passes
    finally:
        hook.remove()
    np.testing.assert_array_equal(blocks.X_adv, one.X_adv)
    np.testing.assert_array_equal(blocks.success, one.success)
    assert blocks.n_iter == one.n_iter
    np.testing.assert_allclose(blocks.loss_range, one.loss_range, rtol=1e-5)
    assert 0 < blocks.success.mean() < 1
    if block == 7:
        assert n_block_passes < n_one_passes / 2
    elif block == 1:
        assert n_block_passes == n_one_passes


def test_square_block_planner_depends_on_rows_and_acceptance_only():
    # A few rows: long blocks, longer when proposals are rarely accepted.
    rare = _BlockPlanner(256)
    rare.observe(n_accepted=1, n_ran=40)
    assert rare.block(2) > 4
    frequent = _BlockPlanner(256)
    frequent.observe(n_accepted=8, n_ran=16)
    assert rare.block(2) > frequent.block(2)
    # Many rows with frequent acceptance (later proposals would mostly be dropped), or more rows
    # than max_candidates allows: one iteration a pass.
    assert frequent.block(100) == 1
    assert rare.block(200) == 1
    # No clock: the same counts give the same blocks.
    again = _BlockPlanner(256)
    again.observe(n_accepted=1, n_ran=40)
    assert [again.block(n) for n in (1, 2, 5, 20)] == [rare.block(n) for n in (1, 2, 5, 20)]


def test_square_needs_images(shuffled_digits, mlp):
    _, (X, y) = shuffled_digits
    with pytest.raises(ValueError, match="Square attacks images"):
        Square(mlp, eps=0.1, max_iter=2).generate(X[:3], y[:3])


def _predict(model, X):
    with torch.no_grad():
        return model(torch.as_tensor(X, dtype=torch.float32).reshape(-1, *SHAPE)).argmax(1).numpy()


# --------------------------------------------------------------------------- AutoAttack


def _deployed_success(detector, mlp, X_adv, y):
    return (_predict(mlp, X_adv) != y) & (detector.predict(X_adv) == 1)


def test_autoattack_is_never_weaker_per_row_than_any_member(shuffled_digits, mlp, detector):
    _, (X, y) = shuffled_digits
    X, y = X[:150], y[:150]
    common = {"eps": 0.08, "random_state": 0, "input_shape": SHAPE}
    members = (
        APGD(detector, max_iter=20, **common),
        APGD(detector, loss="margin", max_iter=20, **common),
        OrthogonalPGD(detector, step_size=0.01, max_iter=20, **common),
        Square(detector, max_iter=100, **common),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AttackFailureWarning)
        result = AutoAttack(detector, eps=0.08, attacks=members, input_shape=SHAPE).run(X, y)
    ensemble = _deployed_success(detector, mlp, result.X_adv, y)
    np.testing.assert_array_equal(ensemble, result.success)
    assert np.abs(result.X_adv - X).max() <= 0.08 + 1e-6
    alone_any = np.zeros(len(X), dtype=bool)
    for member in members:
        alone = _deployed_success(detector, mlp, member.generate(X, y), y)
        assert np.all(ensemble[alone]), type(member).__name__
        alone_any |= alone
    assert ensemble.mean() > max(alone_any.mean() - 1e-9, 0.3)
    assert list(result.members) == ["APGD", "APGD-2", "OrthogonalPGD", "Square"][: len(result.members)]
    assert set(result.broken_by[ensemble]) <= set(result.members)
    assert sum(m.n_broken for m in result.members.values()) == ensemble.sum()


def _old_schedule(detector, names, random_state=0, **params):
    """The default members as instances, Square querying once per pass (the ensemble before blocks of queries)."""
    seeds = np.random.RandomState(random_state).randint(np.iinfo(np.int32).max, size=len(names))
    members = []
    for name, seed in zip(names, seeds):
        common = {**params, "random_state": int(seed)}
        if name == "square":
            members.append(Square(detector, max_iter=60, trace=True, **common))
        else:
            members.append(APGD(detector, loss=name[5:], max_iter=10, **common))
    return members


def test_autoattack_breaks_every_row_the_one_query_a_pass_square_broke(shuffled_digits, mlp, detector):
    _, (X, y) = shuffled_digits
    X, y = X[:120], y[:120]
    names = ("apgd-ce", "apgd-margin", "square")
    params = {"eps": 0.06, "input_shape": SHAPE}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AttackFailureWarning)
        old = AutoAttack(detector, attacks=_old_schedule(detector, names, **params), **params).run(X, y)
        new = AutoAttack(detector, attacks=names, max_iter=10, square_max_iter=60, random_state=0, **params).run(X, y)
    assert old.members["Square"].n_broken > 0  # the workload has rows only Square breaks
    assert np.all(new.success[old.success])
    np.testing.assert_array_equal(new.X_adv, old.X_adv)
    assert [b.n_broken for b in new.members.values()] == [b.n_broken for b in old.members.values()]


def test_autoattack_runs_square_only_on_rows_no_white_box_member_broke(shuffled_digits, mlp, detector, monkeypatch):
    _, (X, y) = shuffled_digits
    X, y = X[:120], y[:120]
    seen = []
    original = Square.run

    def recording_run(self, X, y=None, **kwargs):
        seen.append(np.array(X, copy=True))
        return original(self, X, y, **kwargs)

    monkeypatch.setattr(Square, "run", recording_run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AttackFailureWarning)
        result = AutoAttack(
            detector, attacks=("apgd-ce", "square"), eps=0.06, max_iter=10, square_max_iter=30, random_state=0,
            input_shape=SHAPE,
        ).run(X, y)
    (square_rows,) = seen
    unbroken = result.broken_by != "apgd-ce"
    assert 0 < unbroken.sum() < len(X)
    np.testing.assert_array_equal(square_rows, X[unbroken])
    assert result.members["square"].n_attacked == unbroken.sum()


def test_autoattack_keeps_successful_starting_points(shuffled_digits, mlp):
    _, (X, y) = shuffled_digits
    X, y = X[:60], y[:60]
    start = APGD(mlp, eps=0.1, max_iter=20, random_state=0, input_shape=SHAPE).generate(X, y)
    broken = _predict(mlp, start) != y
    result = AutoAttack(mlp, eps=0.1, max_iter=5, square_max_iter=20, input_shape=SHAPE, random_state=0).run(
        X, y, x_init=start
    )
    np.testing.assert_array_equal(result.X_adv[broken], start[broken])
    assert np.all(result.broken_by[broken] == "x_init")
    assert list(result.members) == ["apgd-ce", "apgd-dlr", "square"]
    with pytest.raises(ValueError, match="shape of X"):
        AutoAttack(mlp, eps=0.1, input_shape=SHAPE).run(X, y, x_init=start[:5])


def test_autoattack_default_members_against_a_detector(shuffled_digits, mlp, detector):
    _, (X, y) = shuffled_digits
    X, y = X[:60], y[:60]
    result = AutoAttack(detector, eps=0.1, max_iter=10, square_max_iter=50, random_state=0).run(X, y)
    assert list(result.members)[:4] == ["apgd-ce", "apgd-margin", "two-phase", "orthogonal"]
    np.testing.assert_array_equal(result.success, _deployed_success(detector, mlp, result.X_adv, y))
    with pytest.raises(ValueError, match="Unknown AutoAttack member"):
        AutoAttack(detector, attacks=("apgd-xyz",)).run(X, y)


def test_orthogonal_pgd_needs_a_detector(shuffled_digits, mlp):
    _, (X, y) = shuffled_digits
    with pytest.raises(ValueError, match="adaptive=True"):
        OrthogonalPGD(mlp, eps=0.1, max_iter=2).generate(X[:3], y[:3])


@pytest.mark.parametrize("mode", ["orthogonal", "selective"])
def test_orthogonal_and_selective_pgd_evade_the_detector(shuffled_digits, mlp, detector, mode):
    _, (X, y) = shuffled_digits
    X, y = X[:150], y[:150]
    params = {"eps": 0.1, "step_size": 0.01, "max_iter": 40, "random_state": 0}
    plain = PGD(detector, adaptive=False, **params).generate(X, y)
    ours = OrthogonalPGD(detector, mode=mode, **params).generate(X, y)
    assert np.abs(ours - X).max() <= 0.1 + 1e-6
    assert _deployed_success(detector, mlp, ours, y).mean() > _deployed_success(detector, mlp, plain, y).mean()


# --------------------------------------------------------------------------- failure checks


def _quiet_check(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AttackFailureWarning)
        report = check_attack_failure(*args, **kwargs)
    return report, [str(w.message) for w in caught if w.category is AttackFailureWarning]


def test_failure_checks_stay_silent_on_the_plain_model(shuffled_digits, mlp):
    _, (X, y) = shuffled_digits
    attack = APGD(mlp, eps=0.1, max_iter=50, random_state=0, input_shape=SHAPE)
    report, messages = _quiet_check(attack, X, y, eps_values=[0.03, 0.06, 0.1], max_samples=100)
    assert sorted(report.checks) == ["black_box", "monotone", "stalled", "unbounded"]
    assert report.fired == [] and messages == []
    assert report.checks["unbounded"].value == 1.0


def test_failure_checks_fire_on_the_masked_model(shuffled_digits, masked):
    _, (X, y) = shuffled_digits
    assert _accuracy(masked, X, y) > 0.85
    attack = APGD(masked, eps=0.1, max_iter=50, random_start=False, random_state=0, input_shape=SHAPE)
    report, messages = _quiet_check(attack, X, y, max_samples=100)
    assert {"unbounded", "stalled", "black_box"} <= set(report.fired)
    assert report.checks["stalled"].value == 1.0  # zero gradients: no failing row ever moved
    for name in ("unbounded", "stalled", "black_box"):
        assert any(f"check {name!r}" in m and "Try" in m for m in messages), name


def test_failure_checks_fire_on_a_masked_detector(shuffled_digits, mlp, detector):
    _, (X, y) = shuffled_digits
    # Same outputs (x * 0 + x.detach() == x exactly), zero input gradient: the deployed
    # detector is unchanged, only the attack's gradients through it are masked.
    masked = SurfaceView(detector, lambda forward: lambda x: forward(x * 0 + x.detach()))
    attack = APGD(masked, eps=0.1, max_iter=20, random_state=0)
    report, messages = _quiet_check(
        attack, X, y, eps_values=[0.05, 0.1, 0.2, 0.3], black_box=None, unbounded=False, max_samples=100
    )
    assert {"non_adaptive", "stalled"} <= set(report.fired)
    assert report.checks["non_adaptive"].value < -0.02
    assert any("check 'non_adaptive'" in m and "Try AutoAttack" in m for m in messages)
    curve = report.checks["monotone"].curve
    assert curve.shape == (4,)
    assert report.checks["monotone"].value == pytest.approx(np.max(np.maximum.accumulate(curve) - curve))
    # The same checks stay silent for the unmasked detector.
    report, _ = _quiet_check(
        APGD(detector, eps=0.1, max_iter=20, random_state=0), X, y, eps_values=[0.05, 0.1, 0.2, 0.3],
        black_box=None, unbounded=False, max_samples=100,
    )
    assert not {"non_adaptive", "monotone", "stalled"} & set(report.fired)


# --------------------------------------------------------------------------- escape scores (flat reject regions)


def test_kernel_log_ratio_matches_hand_computation_and_keeps_a_gradient_far_away():
    rng = np.random.RandomState(0)
    support, coef, intercept, gamma = rng.randn(6, 3), rng.randn(6, 2), np.array([-0.9, 0.2]), 0.5
    machine = RBFKernelMachine(support, coef, intercept, gamma)
    z = np.vstack([rng.randn(4, 3), [[30.0, 0.0, 0.0]]])  # the last row is far from every support vector
    kernel = np.exp(-gamma * ((z[:, None] - support[None]) ** 2).sum(-1))
    offset = -0.5
    gap = intercept - offset
    positive = kernel @ np.clip(coef, 0, None) + np.clip(gap, 0, None)
    negative = kernel @ np.clip(-coef, 0, None) + np.clip(-gap, 0, None)
    zt = torch.tensor(z, requires_grad=True)
    ratio = machine.log_ratio(zt, offset)
    np.testing.assert_allclose(ratio[:4].detach().numpy(), np.log(positive / negative)[:4], rtol=1e-10)
    scores = machine(zt)
    np.testing.assert_array_equal((ratio > 0).numpy(), (scores > offset).numpy())
    # Far away the score sits at the intercept with a vanishing gradient (exp(-gamma * d^2) ~ 1e-180)...
    (score_grad,) = torch.autograd.grad(scores[4, 0], zt)
    assert score_grad[4].abs().max() < 1e-150
    # ... while the log-ratio still pulls towards the nearest support vector of positive weight.
    (ratio_grad,) = torch.autograd.grad(machine.log_ratio(zt, offset)[4, 0], zt)
    positive_rows = np.flatnonzero(coef[:, 0] > 0)
    nearest = support[positive_rows[np.argmin(((z[4] - support[positive_rows]) ** 2).sum(1))]]
    np.testing.assert_allclose(ratio_grad[4].numpy(), 2 * gamma * (nearest - z[4]), rtol=1e-6)


@pytest.fixture(scope="module")
def small_dnr(shuffled_digits, mlp):
    (X, y), _ = shuffled_digits
    dnr = DeepNeuralRejection(mlp, layers=["2", "3"], input_shape=SHAPE, random_state=0).fit(X[:500], y[:500])
    return dnr.infer_threshold(X[500:], threshold_perc=95)


def test_dnr_escape_scores_have_the_sign_of_acceptance_and_survive_pickling(shuffled_digits, small_dnr):
    _, (X, _) = shuffled_digits
    surface = small_dnr.attack_surface()
    x = surface.to_tensor(X[:100])
    with torch.no_grad():
        escape = surface.escape(x)
        scores = surface.forward(x)
    np.testing.assert_array_equal((escape > 0).numpy(), (scores[:, :-1] > scores[:, -1:]).numpy())
    assert 0 < (escape > 0).any(dim=1).float().mean() < 1  # some rows rejected, some accepted
    with torch.no_grad():
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(small_dnr)).attack_surface().escape(x), escape)
    assert surface.classifier_only().escape is None
    detector = small_dnr.as_detector()
    with torch.no_grad():
        np.testing.assert_array_equal(detector.attack_surface().escape(x), escape)
    assert copy.deepcopy(small_dnr).set_params(threshold=None).attack_surface().escape is None


def test_dnr_surface_gives_scores_and_escape_scores_from_one_pass(shuffled_digits, small_dnr):
    _, (X, y) = shuffled_digits
    X, y = X[:40], y[:40]
    surface = small_dnr.attack_surface()
    assert type(surface).protocol_version == 2
    x = surface.to_tensor(X)
    with torch.no_grad():
        scores, escape = surface.forward_with_escape(x)
        np.testing.assert_array_equal(scores, surface.forward(x))
        np.testing.assert_array_equal(escape, surface.escape(x))
    assert surface.classifier_only().forward_with_escape is None
    assert copy.deepcopy(small_dnr).set_params(threshold=None).attack_surface().forward_with_escape is None
    # An APGD step is one pass through the network with protocol 2, two with protocol 1
    # (a surface that gives escape alone), plus the final judgement; the results are the same.
    passes = []
    hook = small_dnr.model_.net.register_forward_pre_hook(lambda *_: passes.append(1))
    try:
        params = {"loss": "escape", "random_start": False, "eps": 0.1, "max_iter": 8, "random_state": 0}
        shared = APGD(small_dnr, **params).run(X, y)
        n_shared = len(passes)
        old_style = APGD(SurfaceView(small_dnr, forward_with_escape=None), **params).run(X, y)
        n_old = len(passes) - n_shared
    finally:
        hook.remove()
    assert shared.n_iter == old_style.n_iter == 8
    assert n_shared == shared.n_iter + 2
    assert n_old == 2 * (shared.n_iter + 1) + 1
    np.testing.assert_array_equal(shared.X_adv, old_style.X_adv)
    np.testing.assert_array_equal(shared.success, old_style.success)


def test_a_surface_written_for_protocol_1_is_still_attacked_with_its_escape_scores(shuffled_digits, small_dnr):
    _, (X, y) = shuffled_digits
    X, y = X[:60], y[:60]
    dnr_surface = small_dnr.attack_surface()

    class OldStyleDetector:  # knows forward, classifier and escape only
        def attack_surface(self):
            return AttackSurface(
                forward=dnr_surface.forward, classifier=dnr_surface.classifier, escape=dnr_surface.escape,
                n_classes=dnr_surface.n_classes, reject_index=dnr_surface.reject_index,
                device=dnr_surface.device, input_shape=dnr_surface.input_shape, outputs_are_logits=False,
                classes=dnr_surface.classes,
            )

    assert OldStyleDetector().attack_surface().forward_with_escape is None
    params = {"eps": 0.1, "max_iter": 20, "square_max_iter": 20, "random_state": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AttackFailureWarning)
        old = AutoAttack(OldStyleDetector(), **params).run(X, y)
        new = AutoAttack(small_dnr, **params).run(X, y)
    assert list(old.members)[:4] == ["apgd-ce", "apgd-margin", "two-phase", "escape"]
    assert old.members["escape"].n_attacked > 0
    np.testing.assert_array_equal(old.success, new.success)
    np.testing.assert_array_equal(old.X_adv, new.X_adv)
    # A surface given forward_with_escape alone gets escape from it.
    only_shared = dataclasses.replace(dnr_surface, escape=None)
    x = dnr_surface.to_tensor(X[:5])
    with torch.no_grad():
        np.testing.assert_array_equal(only_shared.escape(x), dnr_surface.escape(x))


def test_escape_loss_breaks_rows_the_margin_loss_leaves_rejected(shuffled_digits, small_dnr):
    _, (X, y) = shuffled_digits
    X, y = X[:60], y[:60]
    common = {"eps": 0.1, "max_iter": 20, "random_state": 0}
    margin = deployed_predictions(small_dnr, APGD(small_dnr, loss="margin", **common).generate(X, y))
    escape = deployed_predictions(
        small_dnr, APGD(small_dnr, loss="escape", random_start=False, **common).generate(X, y)
    )
    left_rejected = margin.flagged & (margin.labels != y)
    broken_by_escape = (escape.labels != y) & ~escape.flagged
    assert (left_rejected & broken_by_escape).sum() >= 2
    result = AutoAttack(small_dnr, eps=0.1, max_iter=20, square_max_iter=20, random_state=0).run(X, y)
    assert list(result.members)[:4] == ["apgd-ce", "apgd-margin", "two-phase", "escape"]
    with pytest.raises(ValueError, match="loss='escape' needs"):
        APGD(small_dnr, loss="escape", adaptive=False).generate(X[:2], y[:2])
