"""README.md is a landing page whose commands and snippets run as written.

Each ```python block runs in a fresh process (the checkout's skadv first on the path); where a
```text block follows it (before the next ```python block), that is what it must print, numbers
within a tolerance (another CPU may round differently), everything else exactly.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
TOLERANCE = 0.03  # absolute, on every number printed with a decimal point


def _snippets():
    """``[(code, expected output or None)]`` for each ```python block, in order."""
    snippets = []
    for match in FENCE.finditer(README):
        language, body = match.groups()
        if language == "python":
            snippets.append([body, None])
        elif language == "text" and snippets and snippets[-1][1] is None:
            snippets[-1][1] = body
    return [tuple(snippet) for snippet in snippets]


SNIPPETS = _snippets()


def _same_output(printed, expected):
    printed_lines, expected_lines = printed.strip().splitlines(), expected.strip().splitlines()
    if len(printed_lines) != len(expected_lines):
        return False
    for got, want in zip(printed_lines, expected_lines):
        if NUMBER.sub("#", got) != NUMBER.sub("#", want):
            return False
        for a, b in zip(NUMBER.findall(got), NUMBER.findall(want)):
            if ("." in b and abs(float(a) - float(b)) > TOLERANCE) or ("." not in b and a != b):
                return False
    return True


def test_readme_is_a_landing_page():
    assert len(README.splitlines()) <= 150
    # The two set-up commands come first, and CI runs exactly the test command.
    commands = [body.strip() for language, body in FENCE.findall(README) if language == "bash"]
    assert commands[:2] == [
        "pip install torch==2.13.0 . && python -m skadv demo",
        'pip install torch==2.13.0 ".[test]" && python -m pytest',
    ]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r'^pip install torch==2\.13\.0 "\.\[test\]"$', ci, re.MULTILINE)
    assert re.search(r"^python -m pytest$", ci, re.MULTILINE)
    assert "python -m sphinx -W --keep-going -b html doc doc/_build/html" in ci
    assert SNIPPETS and SNIPPETS[0][1], "the Quick start shows what it prints"
    # One picture, committed and small.
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert len(images) == 1 and (ROOT / images[0]).is_file()
    assert (ROOT / images[0]).stat().st_size < 200_000
    # Every estimator has its line in the table.
    table = [line for line in README.splitlines() if line.startswith("| [`")]
    for name in ("AdversarialAEDetector", "ModelDistillationDetector", "VAEDetector", "DNRDetector",
                 "ConfidenceDetector", "MahalanobisDetector", "FeatureSqueezingDetector",
                 "DeepNeuralRejection", "skadv.attacks"):
        assert sum(f"[`{name}`]" in line for line in table) == 1, name


def test_relative_links_exist():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    relative = [link for link in links if "://" not in link]
    assert relative
    missing = [link for link in relative if not (ROOT / link).exists()]
    assert not missing


def test_output_comparison_has_a_tolerance():
    expected = "accuracy: clean 0.913, attacked 0.124\n[-1  1]"
    assert _same_output("accuracy: clean 0.920, attacked 0.101\n[-1  1]", expected)
    assert not _same_output("accuracy: clean 0.960, attacked 0.124\n[-1  1]", expected)
    assert not _same_output("accuracy: clean 0.913, attacked 0.124\n[-1 -1]", expected)
    assert not _same_output("accuracy: test 0.913, attacked 0.124\n[-1  1]", expected)
    assert not _same_output("accuracy: clean 0.913, attacked 0.124", expected)


@pytest.mark.parametrize(("code", "expected"), SNIPPETS, ids=[f"block{i}" for i in range(len(SNIPPETS))])
def test_snippet_runs_and_prints_what_readme_says(code, expected, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    if expected is not None:
        assert _same_output(result.stdout, expected), f"printed:\n{result.stdout}\nREADME says:\n{expected}"
