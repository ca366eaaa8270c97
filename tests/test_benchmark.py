"""`python -m skadv benchmark --quick`: the table it prints and writes (CSV, markdown, PNG, HTML), and its checks."""

import csv

import matplotlib.image
import numpy as np
import pytest

from skadv.__main__ import main
from skadv._cli._benchmark import BASELINES, SEED_DETECTORS, run_benchmark, settings_for
from skadv._cli._output import print_report

RATES = ("clean_fpr", "clean_acc_rej", "fgsm@0.1_tpr", "pgd@0.2_tpr", "cw_tpr", "adaptive@0.2_evasion",
         "adaptive@0.2_tpr")
AUROCS = ("fgsm@0.1_auroc", "pgd@0.2_auroc", "cw_auroc", "harmful_auroc")
FILES = ["benchmark_digits-cnn.csv", "benchmark_digits-cnn.html", "benchmark_digits-cnn.md",
         "benchmark_digits-cnn.png"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("benchmark")
    report = run_benchmark("digits-cnn", quick=True, out_dir=str(out), verbose=0)
    return out, report


def test_quick_benchmark_writes_the_seven_rows_with_every_column(quick_run):
    out, _ = quick_run
    with open(out / "benchmark_digits-cnn.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["detector"] for row in rows] == [*SEED_DETECTORS, *BASELINES]
    assert [row["kind"] for row in rows] == ["seed"] * 4 + ["baseline"] * 3
    for row in rows:
        for column in (*RATES, *AUROCS):
            value, lo, hi = (float(row[column + suffix]) for suffix in ("", "_lo", "_hi"))
            # NaN only where no row was successful / harmful; quick runs have both for every column.
            assert 0.0 <= lo <= value <= hi <= 1.0, (row["detector"], column, row[column])
        # Thresholds at 5 % on 252 held-out rows, FPR measured on 540 test rows: the standard
        # error of the difference is sqrt(0.05 * 0.95 * (1/252 + 1/540)) = 0.017; 0.06 is 3.5 of them.
        assert abs(float(row["clean_fpr"]) - 0.05) <= 0.06, (row["detector"], row["clean_fpr"])
        assert float(row["fit_s"]) > 0 and float(row["score_ms_per_1k"]) > 0
        assert row["adaptive@0.2_checks"] == "none fired" or row["adaptive@0.2_checks"].endswith(" FIRED")
        assert row["pgd@0.2_auroc_vs_msp"] in (("",) if row["detector"] == "MSP" else ("better", "worse", "overlaps"))


def test_quick_benchmark_marks_its_numbers_as_a_smoke_test(quick_run):
    out, _ = quick_run
    markdown = (out / "benchmark_digits-cnn.md").read_text()
    assert "SMOKE TEST ONLY" in markdown
    assert "`python -m skadv benchmark --workload digits-cnn --quick`" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 7  # header and the seven detectors
    assert table[0].split(" | ")[0] == "| detector"
    assert "SMOKE TEST ONLY" in (out / "benchmark_digits-cnn.html").read_text()

    image = matplotlib.image.imread(out / "benchmark_digits-cnn.png")
    height, width, channels = image.shape
    assert height >= 300 and width >= 600 and channels in (3, 4)
    assert len(np.unique(image.reshape(-1, channels), axis=0)) > 20  # bars and text, not a blank canvas
    assert sorted(path.name for path in out.iterdir()) == FILES


def test_printed_tables_fit_100_columns_or_come_as_markdown_or_csv(quick_run, capsys):
    _, report = quick_run
    print_report(report, "text")
    text = capsys.readouterr().out
    assert max(map(len, text.splitlines())) <= 100
    assert all(name in text for name in (*SEED_DETECTORS, *BASELINES))
    print_report(report, "markdown")
    assert capsys.readouterr().out.startswith("| detector | clean FPR |")
    print_report(report, "csv")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("detector,kind,") and len(lines) == 1 + 7


def test_unknown_workload_is_refused_with_the_valid_names(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"Unknown workload 'mnist'; choose one of digits-mlp, digits-cnn"):
        run_benchmark("mnist", quick=True, out_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())  # refused before any work
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "--workload", "mnist", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "invalid choice: 'mnist'" in capsys.readouterr().err


def test_full_digits28_run_is_lighter_and_quick_runs_are_alike():
    full8, full28 = settings_for("digits-cnn", False), settings_for("digits28-cnn", False)
    changed = {key for key in full8 if key != "budget" and full8[key] != full28[key]}
    assert changed == {"n_digits28", "classifier_epochs", "ae_epochs", "distillation_epochs", "vae_epochs", "dnr_cv"}
    assert all(full28[key] < full8[key] for key in changed)
    assert full28["budget"]["n_adaptive"] < full8["budget"]["n_adaptive"]
    assert full28["budget"]["n_attack"] < full8["budget"]["n_attack"]
    assert settings_for("digits28-cnn", True) == settings_for("digits-cnn", True) == settings_for("digits-mlp", True)
