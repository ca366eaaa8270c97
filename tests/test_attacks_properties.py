"""Properties every attack holds for any data range: the budget and the box are never exceeded.

A tiny random MLP (built here, no training) is attacked with every attack and every norm it
supports, on data in [0, 1], in [0, 255] (uint8 pixels) and standardized (negative values),
with a box matching the data or no box at all. Out-of-range input is refused with a ValueError.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skadv import ConfidenceDetector
from skadv.attacks import (
    APGD,
    FGSM,
    PGD,
    AutoAttack,
    CarliniWagnerL2,
    OrthogonalPGD,
    PGDLineSearch,
    Square,
)

SHAPE = (1, 4, 4)
N_FEATURES = 16

# Data ranges: how to draw rows, and the box of valid inputs.
RANGES = {
    "unit": (lambda rng, n: rng.rand(n, N_FEATURES).astype(np.float32), (0.0, 1.0)),
    "byte": (lambda rng, n: rng.randint(0, 256, size=(n, N_FEATURES)).astype(np.uint8), (0.0, 255.0)),
    "standardized": (lambda rng, n: np.clip(rng.randn(n, N_FEATURES), -3, 3), (-3.0, 3.0)),
}


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(N_FEATURES, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    )


MODEL = _model()


def _detector(data_range):
    return ConfidenceDetector(MODEL, input_shape=SHAPE).fit(RANGES[data_range][0](np.random.RandomState(1), 20))


# (name, norm, factory(target_for(X), eps, norm, clip_values)); few iterations: the properties
# hold at every step.
ATTACKS = [
    ("FGSM", np.inf, lambda t, e, n, c: FGSM(t, eps=e, norm=n, clip_values=c)),
    ("FGSM", 2, lambda t, e, n, c: FGSM(t, eps=e, norm=n, clip_values=c)),
    ("PGD", np.inf, lambda t, e, n, c: PGD(t, eps=e, norm=n, step_size=e / 2, max_iter=3, random_state=0,
                                            clip_values=c)),
    ("PGD", 2, lambda t, e, n, c: PGD(t, eps=e, norm=n, step_size=e / 2, max_iter=3, random_state=0,
                                       clip_values=c)),
    ("PGDLineSearch", 2, lambda t, e, n, c: PGDLineSearch(t, eps=e, step_size=e / 4, max_iter=3,
                                                           max_line_search=2, clip_values=c)),
    ("CarliniWagnerL2", 2, lambda t, e, n, c: CarliniWagnerL2(t, eps=e, binary_search_steps=2, max_iter=4,
                                                               learning_rate=0.1, initial_const=1.0,
                                                               clip_values=c)),
    ("APGD", np.inf, lambda t, e, n, c: APGD(t, eps=e, norm=n, max_iter=3, random_state=0, clip_values=c)),
    ("APGD", 2, lambda t, e, n, c: APGD(t, eps=e, norm=n, loss="dlr", max_iter=3, random_state=0,
                                         clip_values=c)),
    ("OrthogonalPGD", np.inf, lambda t, e, n, c: OrthogonalPGD(t, eps=e, norm=n, step_size=e / 2, max_iter=3,
                                                                random_state=0, clip_values=c)),
    ("OrthogonalPGD", 2, lambda t, e, n, c: OrthogonalPGD(t, eps=e, norm=n, mode="selective", step_size=e / 2,
                                                           max_iter=3, random_state=0, clip_values=c)),
    ("Square", np.inf, lambda t, e, n, c: Square(t, eps=e, norm=n, max_iter=5, random_state=0, clip_values=c)),
    ("Square", 2, lambda t, e, n, c: Square(t, eps=e, norm=n, max_iter=5, random_state=0, clip_values=c)),
    ("AutoAttack", np.inf, lambda t, e, n, c: AutoAttack(t, eps=e, norm=n, max_iter=2, square_max_iter=3,
                                                          random_state=0, clip_values=c)),
    ("AutoAttack", 2, lambda t, e, n, c: AutoAttack(t, eps=e, norm=n, max_iter=2, square_max_iter=3,
                                                     random_state=0, clip_values=c)),
]
# Attacks that need a detector as target (the others attack the plain model).
NEEDS_DETECTOR = {"OrthogonalPGD"}
IDS = [f"{name}-L{'inf' if norm == np.inf else 2}" for name, norm, _ in ATTACKS]


def _attack(name, make, data_range, eps, norm, clip_values):
    target = _detector(data_range) if name in NEEDS_DETECTOR else MODEL
    attack = make(target, eps, norm, clip_values)
    attack.set_params(input_shape=SHAPE)
    return attack


@pytest.mark.filterwarnings("ignore::skadv.attacks.AttackFailureWarning")
@pytest.mark.parametrize(("name", "norm", "make"), ATTACKS, ids=IDS)
@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    data_range=st.sampled_from(sorted(RANGES)),
    boxed=st.booleans(),
    eps_share=st.floats(0.01, 0.5),
    n_rows=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_every_row_within_ball_and_box(name, norm, make, data_range, boxed, eps_share, n_rows, seed):
    draw, box = RANGES[data_range]
    X = draw(np.random.RandomState(seed), n_rows)
    width = box[1] - box[0]
    eps = eps_share * width * (1.0 if norm == np.inf else np.sqrt(N_FEATURES) / 2)
    attack = _attack(name, make, data_range, eps, norm, box if boxed else None)
    X_adv = attack.generate(X)

    assert X_adv.shape == X.shape
    assert np.all(np.isfinite(X_adv))
    delta = (X_adv.astype(np.float64) - X.astype(np.float64)).reshape(n_rows, -1)
    dist = np.abs(delta).max(axis=1) if norm == np.inf else np.linalg.norm(delta, axis=1)
    # float32 rounding at the data's scale (the attacks compute in float32)
    tol = 1e-6 * eps + 8 * np.finfo(np.float32).eps * max(np.abs(box).max(), 1.0)
    assert dist.max() <= eps + tol, (dist.max(), eps)
    if boxed:
        assert X_adv.min() >= box[0] and X_adv.max() <= box[1]


@pytest.mark.parametrize(("name", "norm", "make"), ATTACKS, ids=IDS)
@pytest.mark.parametrize(
    ("data_range", "clip_values", "observed"),
    [
        ("byte", (0.0, 1.0), r"\[\d+(\.\d+)?, 2\d\d\]"),
        ("standardized", (0.0, 1.0), r"\[-\d\.\d+, \d\.\d+\]"),
        ("unit", (0.25, 0.75), r"\[0\.\d+, 0\.\d+\]"),
    ],
)
def test_out_of_range_input_is_refused(name, norm, make, data_range, clip_values, observed):
    X = RANGES[data_range][0](np.random.RandomState(0), 20)
    attack = _attack(name, make, data_range, 0.1, norm, clip_values)
    with pytest.raises(ValueError, match=rf"X has values in {observed}, outside clip_values=\(") as info:
        attack.generate(X)
    assert "clip_values=None" in str(info.value)
    assert "clip_values=(0, 255)" in str(info.value)


def test_range_error_names_the_observed_range():
    X = np.arange(32, dtype=np.float32).reshape(2, 16) / 2  # 0 .. 15.5
    with pytest.raises(ValueError, match=r"X has values in \[0, 15\.5\], outside clip_values=\(0\.0, 1\.0\)"):
        PGD(MODEL, eps=0.1, max_iter=2, input_shape=SHAPE).generate(X)
    # NaN is out of every box and said so.
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"non-finite values"):
        PGD(MODEL, eps=0.1, max_iter=2, input_shape=SHAPE, clip_values=(0, 16)).generate(X)


def test_array_bounds_broadcast_over_one_input():
    X = np.random.RandomState(0).rand(4, N_FEATURES).astype(np.float32)
    lo = np.zeros(SHAPE, dtype=np.float32)
    hi = np.ones(SHAPE, dtype=np.float32)
    X_adv = PGD(MODEL, eps=0.1, max_iter=2, input_shape=SHAPE, clip_values=(lo, hi), random_state=0).generate(X)
    assert np.abs(X_adv - X).max() <= 0.1 + 1e-6
    hi[0, 0, 0] = 1e-3  # the first pixel's bound below the data
    with pytest.raises(ValueError, match=r"outside clip_values=\(array bounds\)"):
        PGD(MODEL, eps=0.1, max_iter=2, input_shape=SHAPE, clip_values=(lo, hi)).generate(X)


def test_tools_that_run_attacks_check_the_range_first():
    pytest.importorskip("matplotlib")
    from skadv.attacks import check_attack_failure
    from skadv.plotting import AttackTraceDisplay

    X = RANGES["byte"][0](np.random.RandomState(0), 10)
    attack = PGD(MODEL, eps=2.0, max_iter=2, input_shape=SHAPE, random_state=0)
    with pytest.raises(ValueError, match=r"X has values in \[\d+, \d+\], outside clip_values=\(0\.0, 1\.0\)"):
        check_attack_failure(attack, X)
    with pytest.raises(ValueError, match=r"X has values in \[\d+, \d+\], outside clip_values=\(0\.0, 1\.0\)"):
        AttackTraceDisplay.from_attack(attack, X)
    # With the data's box, both run.
    attack.set_params(clip_values=(0, 255))
    report = check_attack_failure(attack, X, warn=False)
    assert 0.0 <= report.evasion <= 1.0


@pytest.mark.parametrize("excess, refused", [(2e-7, False), (8e-7, True)])
def test_attacks_and_evaluate_refuse_the_same_inputs(excess, refused):
    """One rule for both: a value within float32 rounding of the box is in it, anything beyond is out."""
    from skadv.evaluation import evaluate

    X = np.random.RandomState(0).rand(12, N_FEATURES).astype(np.float32)
    X[0, 0] = np.float32(1.0 + excess)
    y = np.repeat(np.arange(3), 4)
    attack = PGD(MODEL, eps=0.1, max_iter=2, input_shape=SHAPE)
    # fpr=0.9 is refused right after the range check: that error means the range was accepted.
    run_evaluate = lambda: evaluate(MODEL, X, y, detectors=[], input_shape=SHAPE, fpr=0.9)  # noqa: E731
    if refused:
        with pytest.raises(ValueError, match=r"X has values in \[.*, 1\], outside clip_values"):
            attack.check_input_range(X)
        with pytest.raises(ValueError, match=r"X spans \[.*, 1\], outside clip_values=\(0, 1\)"):
            run_evaluate()
    else:
        attack.check_input_range(X)
        with pytest.raises(ValueError, match=r"fpr must be in"):
            run_evaluate()
