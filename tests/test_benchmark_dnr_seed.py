"""A small run of the seed-scale DNR benchmark (benchmarks/dnr.py --scale seed): it runs and agrees."""

import importlib.util
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "dnr.py"


def _run_benchmark(argv):
    spec = importlib.util.spec_from_file_location("dnr_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


@pytest.mark.skipif(not BENCHMARK.exists(), reason="benchmarks/ is not part of this checkout")
def test_seed_benchmark_small_run(capsys):
    report = _run_benchmark([
        "--scale", "seed", "--sizes", "200", "--attack-size", "200", "--n-test", "40", "--cnn-rows", "200",
        "--epochs", "2", "--n-components", "100", "--attack-rows", "3", "--attack-iter", "2", "--repeats", "1",
        "--n-jobs", "2",
    ])
    assert '"benchmark"' in capsys.readouterr().out
    entry = report["sizes"]["200"]
    assert entry["exact"]["kernel_terms_per_layer"][0] > 0
    assert entry["approximate"]["kernel_terms_per_layer"] == [100, 100, 100]
    # float32 kernels change scores only at float32 precision and no decision.
    assert entry["exact"]["float32_max_abs_diff"] < 1e-3
    assert entry["exact"]["float32_same_decisions"]
    # Tiny, barely trained CNN: agreement well above chance (0.1) is what this run can show.
    assert 0.3 < entry["approximate_vs_exact"]["same_argmax"] <= 1.0
    assert 0 <= entry["approximate_vs_exact"]["rejected_by_one_only"] <= 8  # 10 % of 40 rows each
    assert report["attack"]["rows"] == 3 and report["attack"]["skadv_rows_per_s"] > 0
    assert "secml" not in report


@pytest.mark.skipif(not BENCHMARK.exists(), reason="benchmarks/ is not part of this checkout")
def test_seed_benchmark_noise_floor_without_attack(capsys):
    report = _run_benchmark([
        "--scale", "seed", "--sizes", "120", "--attack-size", "120", "--n-test", "20", "--cnn-rows", "120",
        "--epochs", "1", "--n-components", "50", "--repeats", "1", "--n-jobs", "2", "--skip-attack", "--noise-floor",
    ])
    capsys.readouterr()
    assert "attack" not in report
    floor = report["sizes"]["120"]["exact_vs_exact_other_folds"]
    assert set(floor) == {"same_argmax", "same_decisions_10pct_reject", "rejected_by_one_only"}
    # Both exact DNRs reject 2 of the 20 rows, so at most 4 rows are rejected by one of them only.
    assert 0 <= floor["rejected_by_one_only"] <= 4
    assert 0.5 < floor["same_argmax"] <= 1.0


@pytest.mark.skipif(not BENCHMARK.exists(), reason="benchmarks/ is not part of this checkout")
def test_seed_benchmark_landmark_sweep_reaches_exact_with_every_row(capsys):
    """With every training row a landmark, hinge SVMs on the Nystroem features are the exact SVMs."""
    report = _run_benchmark([
        "--scale", "seed", "--sizes", "120", "--attack-size", "120", "--n-test", "20", "--cnn-rows", "120",
        "--epochs", "1", "--n-components", "50", "--repeats", "1", "--n-jobs", "2", "--skip-attack",
        "--landmark-sweep", "0.25", "1",
    ])
    capsys.readouterr()
    sweep = report["sizes"]["120"]["landmark_sweep"]
    assert sweep["layer"] == "features.relu2"
    assert set(sweep["30 landmarks (0.25 of the rows)"]) == {
        "same_argmax", "same_decisions_10pct_reject", "rejected_by_one_only"
    }
    # Every fit's Nystroem map then spans all its rows: the same kernel, the same decisions.
    assert sweep["120 landmarks (1 of the rows)"]["same_decisions_10pct_reject"] == 1.0
