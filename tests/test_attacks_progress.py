"""Progress of long attack work: tqdm bars on stderr when ``verbose``, nothing otherwise."""

import numpy as np
import pytest
import torch

from skadv.attacks import APGD, PGD, AutoAttack, CarliniWagnerL2, Square
from skadv.metrics import security_evaluation

SHAPE = (1, 4, 4)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


@pytest.fixture(scope="module")
def X():
    return np.random.RandomState(0).rand(12, 16).astype(np.float32)


ATTACKS = [
    (PGD, dict(eps=0.1, max_iter=3, random_state=0)),
    (APGD, dict(eps=0.1, max_iter=3, random_state=0)),
    (Square, dict(eps=0.1, max_iter=3, random_state=0)),
    (CarliniWagnerL2, dict(binary_search_steps=1, max_iter=3)),
]


@pytest.mark.parametrize(("attack_cls", "params"), ATTACKS, ids=[cls.__name__ for cls, _ in ATTACKS])
def test_attack_progress_on_stderr_only_when_verbose(capsys, model, X, attack_cls, params):
    attack_cls(model, input_shape=SHAPE, batch_size=5, **params).generate(X)
    assert capsys.readouterr() == ("", "")

    attack_cls(model, input_shape=SHAPE, batch_size=5, verbose=1, **params).generate(X)
    out, err = capsys.readouterr()
    assert out == ""
    budget = " (ε=0.1)" if "eps" in params else ""
    assert f"{attack_cls.__name__} on 12 rows{budget}" in err
    assert "steps" in err and "batch 3/3" in err


def test_autoattack_progress_per_member(capsys, model, X):
    params = dict(eps=0.1, max_iter=2, square_max_iter=3, input_shape=SHAPE, random_state=0)
    AutoAttack(model, **params).generate(X)
    assert capsys.readouterr() == ("", "")

    result = AutoAttack(model, verbose=1, **params).run(X)
    out, err = capsys.readouterr()
    assert out == ""
    assert "AutoAttack: apgd-ce on 12 rows (ε=0.1)" in err
    # One line per member that ran, with what it broke; the members' own bars as well.
    for name, member in result.members.items():
        assert f"AutoAttack {name}: broke {member.n_broken} of {member.n_attacked}" in err
    assert "APGD on 12 rows (ε=0.1)" in err


def test_security_evaluation_progress_per_eps(capsys, model, X):
    y = np.zeros(len(X), dtype=int)
    kwargs = dict(input_shape=SHAPE, max_iter=2, random_state=0, failure_checks=False)
    security_evaluation(model, PGD, X, y, [0.0, 0.05, 0.1], **kwargs)
    assert capsys.readouterr() == ("", "")

    security_evaluation(model, PGD, X, y, [0.0, 0.05, 0.1], verbose=1, **kwargs)
    out, err = capsys.readouterr()
    assert out == ""
    assert "security_evaluation: PGD on 12 rows" in err
    assert "3/3" in err and "ε=0.1" in err
    assert "PGD on 12 rows (ε=0.05)" in err  # the attack's own progress


def test_security_evaluation_refuses_out_of_range_inputs_before_any_attack(model, X):
    expected = r"X has values in \[\d+(\.\d+)?, 25\d(\.\d+)?\], outside clip_values=\(0\.0, 1\.0\)"
    with pytest.raises(ValueError, match=expected):
        security_evaluation(model, PGD, X * 255, np.zeros(len(X), int), [0.1], input_shape=SHAPE, max_iter=2)
    res = security_evaluation(
        model, PGD, X * 255, np.zeros(len(X), int), [0.0, 25.5], input_shape=SHAPE, max_iter=2,
        step_size=10.0, clip_values=(0, 255), random_state=0, failure_checks=False,
    )
    assert res.accuracy[1] <= res.accuracy[0]
