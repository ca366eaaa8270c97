import os

from skadv.__main__ import main


def test_quick_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ModelDistillation" in out and "clean test accuracy" in out
    assert os.path.isdir(tmp_path)
