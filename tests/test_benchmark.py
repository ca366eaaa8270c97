"""`python -m skadv benchmark --quick`: the table it writes (CSV, markdown), its figure, and its argument checks."""

import csv

import matplotlib.image
import numpy as np
import pytest

from skadv.__main__ import main
from skadv._benchmark import BASELINES, COLUMNS, SEED_DETECTORS, run_benchmark

RATES = ("clean_fpr", "clean_acc_rej", "fgsm_tpr", "pgd_tpr", "cw_tpr", "adaptive_evasion", "adaptive_tpr")
AUROCS = ("fgsm_auroc", "pgd_auroc", "cw_auroc", "harmful_auroc")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("benchmark")
    assert main(["benchmark", "--quick", "--out", str(out)]) == 0
    return out


def test_quick_benchmark_writes_the_seven_rows_with_every_column(quick_run):
    with open(quick_run / "benchmark_digits-cnn.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        rows = list(reader)
    assert [row["detector"] for row in rows] == [*SEED_DETECTORS, *BASELINES]
    assert [row["kind"] for row in rows] == ["seed"] * 4 + ["baseline"] * 3
    for row in rows:
        assert row["workload"] == "digits-cnn" and row["settings"] == "quick (smoke test only)"
        values = {column: float(row[column]) for column in (*RATES, *AUROCS, "fit_s", "score_ms_per_1k")}
        for column in (*RATES, *AUROCS):
            # NaN only where no row was successful / harmful; quick runs have both for every column.
            assert 0.0 <= values[column] <= 1.0, (row["detector"], column, row[column])
        # Thresholds at 5 % on 252 held-out rows, FPR measured on 540 test rows: the standard
        # error of the difference is sqrt(0.05 * 0.95 * (1/252 + 1/540)) = 0.017; 0.06 is 3.5 of them.
        assert abs(values["clean_fpr"] - 0.05) <= 0.06, (row["detector"], values["clean_fpr"])
        assert values["fit_s"] > 0 and values["score_ms_per_1k"] > 0
        assert row["failure_checks"] == "none fired" or row["failure_checks"].endswith(" FIRED")


def test_quick_benchmark_marks_its_numbers_as_a_smoke_test(quick_run):
    markdown = (quick_run / "benchmark_digits-cnn.md").read_text()
    assert "SMOKE TEST ONLY" in markdown
    assert "`python -m skadv benchmark --workload digits-cnn --quick`" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 7  # header and the seven detectors
    assert table[0].split(" | ")[0] == "| detector"

    image = matplotlib.image.imread(quick_run / "benchmark_digits-cnn.png")
    height, width, channels = image.shape
    assert height >= 300 and width >= 600 and channels in (3, 4)
    assert len(np.unique(image.reshape(-1, channels), axis=0)) > 20  # bars and text, not a blank canvas
    assert sorted(path.name for path in quick_run.iterdir()) == [
        "benchmark_digits-cnn.csv", "benchmark_digits-cnn.md", "benchmark_digits-cnn.png",
    ]


def test_unknown_workload_is_refused_with_the_valid_names(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"Unknown workload 'mnist'; choose one of digits-mlp, digits-cnn"):
        run_benchmark("mnist", quick=True, out_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())  # refused before any work
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "--workload", "mnist", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "invalid choice: 'mnist'" in capsys.readouterr().err


def test_full_digits28_run_is_lighter_and_quick_runs_are_alike():
    from skadv._benchmark import _settings

    full8, full28 = _settings("digits-cnn", False), _settings("digits28-cnn", False)
    changed = {key for key in full8 if full8[key] != full28[key]}
    assert changed == {"n_digits28", "classifier_epochs", "ae_epochs", "distillation_epochs", "vae_epochs",
                       "dnr_cv", "n_eval", "n_adaptive"}
    assert all(full28[key] < full8[key] for key in changed)
    assert _settings("digits28-cnn", True) == _settings("digits-cnn", True) == _settings("digits-mlp", True)
