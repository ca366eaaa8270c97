import os

from skadv.__main__ import main

FIGURES = ("score_histograms.png", "security_evaluation.png", "attack_trace_dnr.png", "vae_distinct_labels.png")


def test_quick_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ModelDistillation" in out and "clean test accuracy" in out
    for name in FIGURES:
        path = tmp_path / name
        assert str(path) in out  # the demo lists what it wrote
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == sorted(FIGURES)
