"""skadv.evaluation.evaluate on a user's own model class, its report and files, and `python -m skadv evaluate`."""

import csv
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from skadv import ModelDistillationDetector
from skadv.__main__ import main
from skadv._version import __version__
from skadv.datasets import load_digits8, make_digits_classifier
from skadv.evaluation import BUDGETS, EvaluationReport, evaluate, split_rows
from skadv.evaluation._bootstrap import auroc, bootstrap_counts, combine_seeds, interval, ratio
from skadv.metrics import adversarial_scores, detection_auroc

ROOT = Path(__file__).resolve().parents[1]
# Tiny attacks: the tests check the protocol and the report, not the numbers.
TINY = {
    "n_attack": 40, "n_adaptive": 6, "pgd_steps": 3, "cw_iter": 3, "cw_search": 1, "auto_iter": 3,
    "square_queries": 5, "eot": 1, "n_check": 4, "severities": (2,), "epochs": {"ModelDistillation": 2},
}
FILES = ("evaluation.csv", "evaluation.md", "evaluation.png", "evaluation.html")


class UserCNN(nn.Module):
    """A user's own classifier (not nn.Sequential): conv → relu → pool → linear, for 8x8 images or rows."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = x.reshape(-1, 1, 8, 8)
        return self.head(torch.flatten(nn.functional.max_pool2d(self.act(self.conv(x)), 2), 1))


class SignedInputNet(nn.Module):
    """A user's model that takes inputs in [-1, 1] (e.g. normalised pixels)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner((x + 1) / 2)


@pytest.fixture(scope="module")
def digits_and_model():
    X, y = load_digits8()
    X, y = X[:400], y[:400]
    torch.manual_seed(0)
    net = make_digits_classifier(X, y, epochs=6, module=UserCNN(), random_state=0)
    return X, y, net.module_


@pytest.fixture(scope="module")
def report(digits_and_model):
    X, y, model = digits_and_model
    detectors = {"ModelDistillation": ModelDistillationDetector(model, random_state=0)}
    return evaluate(model, X, y, detectors=detectors, input_shape=(1, 8, 8), eps=[0.1, 0.2], budget=TINY,
                    random_state=0, n_bootstrap=200)


def _rates(record, metrics):
    return [(m, record[m], record[f"{m}_lo"], record[f"{m}_hi"]) for m in metrics]


def test_a_row_per_detector_plus_msp_with_an_interval_on_every_rate(report):
    assert isinstance(report, EvaluationReport)
    assert [r["detector"] for r in report.records] == ["ModelDistillation", "MSP"]
    assert {"clean_fpr", "clean_acc_rej", "fgsm@0.1_auroc", "pgd@0.2_tpr", "cw_evasion", "harmful_auroc",
            "adaptive@0.2_evasion", "adaptive@0.2_tpr"} <= set(report.metrics)
    for record in report.records:
        for metric, value, lo, hi in _rates(record, report.metrics):
            if math.isnan(value):  # e.g. a TPR without a successful adversarial row
                assert math.isnan(lo) and math.isnan(hi), (record["detector"], metric)
                continue
            assert 0.0 <= lo <= value <= hi <= 1.0, (record["detector"], metric, lo, value, hi)
        assert record["fit_s"] >= 0 and record["score_ms_per_1k"] > 0
    distillation, msp = report.records
    assert {distillation[f"{m}_vs_msp"] for m in report.metrics} <= {"better", "worse", "overlaps", ""}
    assert all(msp[f"{m}_vs_msp"] == "" for m in report.metrics)
    table = report.table
    assert list(table["detector"]) == ["ModelDistillation", "MSP"]  # pandas is installed with the test extra


def test_thresholds_come_from_held_out_rows_not_used_to_fit(report, digits_and_model):
    X = digits_and_model[0]
    (split,) = report.splits
    fit, threshold, test = set(split.fit), set(split.threshold), set(split.test)
    assert not (fit & threshold or fit & test or threshold & test)
    assert len(fit | threshold | test) == len(X)
    assert report.settings["n_test"] == len(test) and report.settings["n_threshold"] == len(threshold)
    for name, det in report.detectors.items():
        # 5 % of the held-out threshold rows score above the threshold: infer_threshold(X[threshold], 95).
        expected = np.percentile(adversarial_scores(det, X[split.threshold]), 95)
        assert det.threshold_ == pytest.approx(expected), name


def test_failure_verdicts_of_the_adaptive_attack(report):
    for name in ("ModelDistillation", "MSP"):
        (found,) = report.checks[name]["0.2"].values()
        assert {"unbounded", "non_adaptive", "stalled"} <= set(found)
        assert all(isinstance(check.fired, bool) for check in found.values())
        record = next(r for r in report.records if r["detector"] == name)
        assert record["adaptive@0.2_checks"] == "none fired" or record["adaptive@0.2_checks"].endswith("FIRED")


def test_save_writes_csv_markdown_png_and_a_self_contained_html_page(report, tmp_path):
    paths = report.save(tmp_path)
    assert [Path(p).name for p in paths] == list(FILES)
    with open(tmp_path / "evaluation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["detector"] for row in rows] == ["ModelDistillation", "MSP"]
    assert float(rows[1]["clean_fpr_lo"]) <= float(rows[1]["clean_fpr"]) <= float(rows[1]["clean_fpr_hi"])
    markdown = (tmp_path / "evaluation.md").read_text()
    assert "| detector | clean FPR |" in markdown and "bootstrap interval" in markdown
    image = matplotlib.image.imread(tmp_path / "evaluation.png")
    assert image.shape[0] >= 300 and image.shape[1] >= 600
    assert len(np.unique(image.reshape(-1, image.shape[2]), axis=0)) > 20  # bars and text, not blank
    page = (tmp_path / "evaluation.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2 and "http" not in page.split("<body>")[1]
    assert "Attack-failure checks" in page and "ModelDistillation" in page and "<th>seeds</th><td>[0]</td>" in page


def test_terminal_tables_fit_100_columns(report):
    for text in (report.to_text(), report.to_attack_text()):
        assert max(map(len, text.splitlines())) <= 100
    assert "ModelDistillation" in report.to_text() and "AutoAttack eps=0.2" in report.to_attack_text()


def test_declared_input_range_other_than_0_1(digits_and_model):
    X, y, model = digits_and_model
    X_signed, signed = 2 * X - 1, SignedInputNet(model)
    with pytest.raises(ValueError, match=r"X spans \[-1, 1\], outside clip_values=\(0, 1\).*clip_values=\(-1, 1\)"):
        evaluate(signed, X_signed, y, detectors=[], budget=TINY, random_state=0)
    report = evaluate(signed, X_signed, y, detectors=[], clip_values=(-1, 1), input_shape=(1, 8, 8), budget=TINY,
                      random_state=0, n_bootstrap=100, return_rows=True)
    assert report.settings["eps"] == pytest.approx([0.2, 0.4])  # 0.1 and 0.2 of the range's width
    assert [r["detector"] for r in report.records] == ["MSP"]
    assert report.records[0]["clean_fpr_lo"] <= report.records[0]["clean_fpr"] <= report.records[0]["clean_fpr_hi"]
    for X_adv in [*report.rows.attacks.values(), *report.rows.adaptive["MSP"].values()]:
        assert X_adv.min() >= -1 - 1e-6 and X_adv.max() <= 1 + 1e-6
        assert X_adv.min() < -0.5  # the box is [-1, 1], not [0, 1]
    assert report.rows.corrupted.X.min() >= -1 - 1e-6


def test_same_random_state_same_report_and_several_seeds(digits_and_model):
    X, y, model = digits_and_model
    kwargs = {"detectors": [], "budget": {**TINY, "severities": (), "cw_iter": 0}, "n_bootstrap": 100}
    first = evaluate(model, X, y, random_state=3, **kwargs).records
    again = evaluate(model, X, y, random_state=3, **kwargs).records
    assert first[0].keys() == again[0].keys()
    for key, value in first[0].items():
        if key in ("fit_s", "score_ms_per_1k"):  # wall times
            continue
        assert value == again[0][key] or (isinstance(value, float) and math.isnan(value) and math.isnan(again[0][key]))
    two = evaluate(model, X, y, random_state=[3, 4], **kwargs)
    assert two.settings["seeds"] == [3, 4] and len(two.splits) == 2 and len(two.per_seed) == 2
    per_seed = [row["clean_fpr"] for row in two.per_seed]
    record = two.records[0]
    assert record["clean_fpr"] == pytest.approx(np.mean(per_seed))
    assert record["clean_fpr_lo"] <= record["clean_fpr"] <= record["clean_fpr_hi"]
    assert "seed 3:" in record["adaptive@0.2_checks"]


def test_a_frozen_skorch_net_is_evaluated_as_is():
    from sklearn.frozen import FrozenEstimator

    X, y = load_digits8()
    X, y = X[:300], y[:300]
    net = make_digits_classifier(X, y, epochs=3, random_state=0)
    before = {k: v.clone() for k, v in net.module_.state_dict().items()}
    report = evaluate(FrozenEstimator(net), X, y, detectors=[], input_shape=(1, 8, 8), eps=[0.2],
                      budget={**TINY, "severities": (), "cw_iter": 0}, random_state=0, n_bootstrap=50)
    assert report.records[0]["detector"] == "MSP" and report.settings["model"] == "FrozenEstimator"
    assert all(torch.equal(before[k], v) for k, v in net.module_.state_dict().items())  # never modified


def test_invalid_input_names_the_problem(digits_and_model):
    X, y, model = digits_and_model
    with pytest.raises(ValueError, match=r"input_shape=\(1, 9, 9\) holds 81 values, but X's rows have 64"):
        evaluate(model, X, y, input_shape=(1, 9, 9))
    with pytest.raises(ValueError, match="has no attack_surface"):
        evaluate(model, X, y, detectors={"mine": object()})
    with pytest.raises(ValueError, match="Unknown budget 'fast'; choose one of quick, standard, thorough"):
        evaluate(model, X, y, budget="fast")
    with pytest.raises(ValueError, match="Unknown detector names"):
        evaluate(model, X, y, detectors=["Mahalanobis", "ODIN"])
    with pytest.raises(ValueError, match=r"model must be a torch\.nn\.Module"):
        evaluate(object(), X, y)


def test_split_rows_is_stratified_and_disjoint():
    y = np.repeat(np.arange(4), 25)
    split = split_rows(y, random_state=1)
    assert sorted(np.r_[split.fit, split.threshold, split.test]) == list(range(100))
    assert np.bincount(y[split.test]).tolist() == [8, 7, 7, 8] or len(set(np.bincount(y[split.test]))) <= 2


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_auroc_equals_the_metric_at_unit_weights_and_pairs_replicates():
    rng = np.random.RandomState(0)
    clean = np.round(rng.normal(0, 1, 50), 1)  # ties counted one half
    attacked = np.round(rng.normal(1, 1, 30), 1)
    counts = bootstrap_counts(50, 300, random_state=0)
    assert counts.shape == (300, 50) and (counts.sum(axis=1) == 50).all()
    value, replicates = auroc(clean, np.arange(50), attacked, np.arange(30), counts)
    assert value == pytest.approx(detection_auroc(clean, attacked))
    # Replicate b is the weighted AUROC with row i counted counts[b, i] times.
    b = 7
    weights = np.r_[counts[b], counts[b, :30]]
    labels = np.r_[np.zeros(50), np.ones(30)]
    assert replicates[b] == pytest.approx(roc_auc_score(labels, np.r_[clean, attacked], sample_weight=weights))
    lo, hi = interval(value, replicates, 0.95)
    assert lo <= value <= hi and hi - lo > 0.05


def test_bootstrap_ratio_is_nan_without_a_denominator_and_seeds_combine():
    counts = bootstrap_counts(4, 50, random_state=0)
    value, replicates = ratio([0, 0, 0, 0], [0, 0, 0, 0], counts)
    assert math.isnan(value) and np.isnan(replicates).all() and np.isnan(interval(value, replicates, 0.9)).all()
    value, replicates = combine_seeds([0.2, 0.4], np.vstack([np.full(50, 0.2), np.full(50, 0.4)]), 50, 0)
    assert value == pytest.approx(0.3) and replicates.min() >= 0.2 and replicates.max() <= 0.4
    assert len(np.unique(replicates)) == 3  # seed draws (0.2, 0.2), mixed, (0.4, 0.4)


# ----------------------------------------------------------------------------- command line

_FACTORY = '''
import torch
from torch import nn


class FactoryCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = x.reshape(-1, 1, 8, 8)
        return self.head(torch.flatten(nn.functional.max_pool2d(self.act(self.conv(x)), 2), 1))


def make_model():
    return FactoryCNN()
'''


def test_command_line_evaluate_on_a_factory_and_an_npz(tmp_path, digits_and_model):
    X, y, model = digits_and_model
    (tmp_path / "user_factory.py").write_text(textwrap.dedent(_FACTORY))
    sys.path.insert(0, str(tmp_path))
    try:
        import user_factory

        trained = user_factory.make_model()
        trained.load_state_dict(model.state_dict())  # the same architecture as UserCNN
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("user_factory", None)
    torch.save(trained.state_dict(), tmp_path / "weights.pt")
    np.savez(tmp_path / "data.npz", X=X.reshape(-1, 1, 8, 8), y=y)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "skadv", "evaluate", "--model", "user_factory:make_model", "--weights",
               "weights.pt", "--data", "data.npz", "--detectors", "MSP", "--budget", "quick", "--eps", "0.2",
               "--out", "out"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "budget quick: 100 test rows attacked" in out
    assert "MSP" in out and "AutoAttack" in out and max(map(len, out.splitlines())) <= 100
    assert "[skadv.evaluate] seed 0: fitting" in done.stderr  # progress on stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(FILES)
    with open(tmp_path / "out" / "evaluation.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    assert row["detector"] == "MSP" and float(row["adaptive@0.2_evasion_lo"]) <= float(row["adaptive@0.2_evasion"])

    bad = subprocess.run([*command[:-2], "--clip-values", "0", "0.5", "--out", "bad"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "outside clip_values=(0, 0.5)" in bad.stderr


def test_version_and_bare_command(capsys):
    assert main([]) == 0
    assert "usage: python -m skadv" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"skadv {__version__}"
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    help_text = capsys.readouterr().out
    for name in BUDGETS:
        assert f"  {name}: " in help_text
