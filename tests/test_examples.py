"""Every script in examples/ runs with its --quick settings and prints and writes what it says.

Each example has a check of its own printed results below: the rows of its tables, numbers
in their ranges and the relations between them that hold whatever the seed (an attack at a
larger eps leaves fewer digits classified right; "w/ det." counts flagged digits too, so it
is never below "no def."; round trips print identical scores). The quick settings train
tiny models, so no check pins a number that a change of model could move.
"""

import pathlib
import re
import runpy
import sys

import matplotlib
import matplotlib.image
import numpy as np
import pytest

matplotlib.use("Agg")

EXAMPLES = sorted((pathlib.Path(__file__).parents[1] / "examples").glob("*.py"))
NUMBER = r"(\d+\.\d+)"


def _row(out, *labels, n_numbers):
    """The numbers printed after ``labels`` (whitespace between them) on exactly one line."""
    pattern = r"^\s*" + r"\s+".join(map(re.escape, labels)) + rf"\s+{NUMBER}" * n_numbers + r"\s*$"
    lines = re.findall(pattern, out, re.MULTILINE)
    assert len(lines) == 1, (labels, lines)
    return [float(v) for v in (lines[0] if n_numbers > 1 else [lines[0]])]


def _search(pattern, out, flags=0):
    match = re.search(pattern, out, flags)
    assert match, f"nothing printed matches {pattern!r}"
    return match


def _fractions(values):
    assert all(0.0 <= v <= 1.0 for v in values), values
    return values


def _fraction_or_nan(text):
    value = float(text)  # "nan" where no attacked row was misclassified
    assert np.isnan(value) or 0.0 <= value <= 1.0, text
    return value


def check_adaptive_attack_evaluation(out):
    tuning = {}
    for loss_type in ("kld", "xent"):
        _, held_out = _fractions([float(v) for v in _search(
            rf"^loss_type={loss_type}: contamination=0\.05 \(in-sample\) flags {NUMBER} of the clean test rows; "
            rf"infer_threshold on held-out rows flags {NUMBER}$", out, re.MULTILINE
        ).groups()])
        assert held_out <= 0.25  # the threshold flags 5 % of held-out clean rows
        tuning_line = f"loss_type={loss_type}: adaptive PGD eps=0.1 evasion on validation rows"
        tuning[loss_type] = _fractions(_row(out, tuning_line, n_numbers=1))[0]
    chosen = _search(r"^selected loss_type='(\w+)' \(lowest evasion under the tuning attack\)$", out, re.MULTILINE)[1]
    assert tuning[chosen] == min(tuning.values())
    clean_cost = set()
    for attack in ("non-adaptive PGD", "adaptive PGD (tuning attack)", "AutoAttack (held-out attack)"):
        line = _search(rf"^{re.escape(attack)}\s+{NUMBER}\s+(\S+)\s+(\S+) \|\s+{NUMBER}\s+{NUMBER}$", out, re.MULTILINE)
        evasion, tpr, auroc, fpr, clean_accuracy = line.groups()
        _fractions([float(evasion), float(fpr), float(clean_accuracy)])
        _fraction_or_nan(tpr), _fraction_or_nan(auroc)
        clean_cost.add((fpr, clean_accuracy))
    assert len(clean_cost) == 1  # one fixed threshold, the same clean rows for every attack
    assert re.findall(r"^failure check \w+\s+(?:ok|FIRED)\s+value \S+$", out, re.MULTILINE)


def check_adversarial_ae_detection(out):
    clean_accuracy = float(_search(rf"^CNN clean test accuracy: {NUMBER}", out, re.MULTILINE)[1])
    assert clean_accuracy > 0.8
    fgsm = _fractions(_row(out, "FGSM eps=0.1", "CNN accuracy", n_numbers=1))[0]
    pgd = _fractions(_row(out, "PGD eps=0.2", "CNN accuracy", n_numbers=1))[0]
    assert pgd < fgsm < clean_accuracy
    for variant in ("default (T=1)", "T=0.5", "hidden KLD"):
        for attack, accuracy in (("FGSM eps=0.1", fgsm), ("PGD eps=0.2", pgd)):
            values = _fractions(_row(out, variant, attack, n_numbers=7))
            _, _, _, no_defense, with_detection, _, _ = values
            assert no_defense == accuracy  # the same attacked digits for every variant
            assert with_detection >= no_defense
    success = float(_search(rf"attacker's success \(misclassified and not flagged\): {NUMBER}", out)[1])
    _fractions([success])


def check_dask_scale_out(out):
    for loss_type in ("kld", "xent"):
        local, remote = _fractions(_row(out, f"{{'loss_type': '{loss_type}'}}", n_numbers=2))
        assert local == remote
    _search(r"best local (\{.*?\}), best dask \1; largest score difference 0$", out, re.MULTILINE)
    _search(r"scored on the workers .*; largest difference to in-process scores 0$", out, re.MULTILINE)


def check_distillation_harmful_drift(out):
    for corruption in ("gaussian_noise", "gaussian_blur", "brightness", "pixelate"):
        harmful = []
        for severity in (1, 3, 5):
            line = _search(
                rf"^{corruption}\s+{severity}\s+{NUMBER}\s+(\d+)\s+{NUMBER}\s+(\S+)$", out, re.MULTILINE
            )
            assert line, (corruption, severity)
            accuracy, n_harmful, auroc, p_value = float(line[1]), int(line[2]), float(line[3]), float(line[4])
            _fractions([accuracy, auroc, p_value])
            harmful.append(n_harmful)
        # A stronger corruption harms more digits.
        assert harmful[2] > harmful[0], (corruption, harmful)


def check_dnr_line_search_attack(out):
    _search(rf"^DNR fitted .*; threshold -?{NUMBER} rejects 10 % of \d+ clean validation digits$", out, re.M)
    clean = _search(
        rf"CNN accuracy {NUMBER}; DNR rejects {NUMBER}, accuracy with rejection {NUMBER}, "
        rf"accuracy on accepted digits {NUMBER}",
        out,
    )
    cnn_accuracy, reject_rate, with_rejection, on_accepted = _fractions([float(v) for v in clean.groups()])
    assert cnn_accuracy > 0.8 and 0.02 <= reject_rate <= 0.3
    assert on_accepted >= with_rejection  # rejected clean digits count as errors in the latter
    cnn = []
    for eps in ("0.00", "0.50", "1.00", "2.00"):
        values = _fractions(_row(out, eps, n_numbers=4))
        cnn.append(values[0])
        assert values[3] <= 1 - values[0] + 1e-9  # evading needs a misclassified digit
    assert cnn[-1] < cnn[0]


def check_fgsm_pgd_tutorial(out):
    clean = float(_search(rf"clean accuracy on \d+ test digits: {NUMBER}", out)[1])
    assert clean > 0.8
    for attack in ("FGSM L-inf", "PGD L-inf", "PGD L-inf, no random start", "FGM L2", "PGD L2"):
        accuracy = _fractions(_row(out, attack, n_numbers=5))
        assert accuracy[0] == clean  # eps = 0 is the clean accuracy
        assert accuracy == sorted(accuracy, reverse=True), (attack, accuracy)
    targeted = [
        float(_search(rf"^targeted PGD L-inf eps={eps}: {NUMBER} of the digits", out, re.MULTILINE)[1])
        for eps in (0.1, 0.2, 0.3)
    ]
    assert _fractions(targeted) == sorted(targeted) and targeted[-1] > targeted[0]


def check_sklearn_workflows(out):
    flagged = _search(rf"flagged \(predict == -1\): {NUMBER} of clean test digits, {NUMBER} of PGD", out)
    _fractions([float(v) for v in flagged.groups()])
    assert float(flagged[1]) <= 0.2  # contamination flags a small share of clean digits
    for loss_type in ("kld", "xent"):
        mean_std = _search(rf"^\{{'loss_type': '{loss_type}'\}}\s+{NUMBER} ± {NUMBER}$", out, re.MULTILINE)
        _fractions([float(v) for v in mean_std.groups()])
    _search(r"^joblib: .* reloaded, identical scores$", out, re.MULTILINE)
    _search(r"^skops: reloaded trusting only those, identical scores$", out, re.MULTILINE)
    untrusted = _search(r"^skops: untrusted types in .*: \[(.*)\]$", out, re.MULTILINE)[1]
    assert "'skadv.detectors._distillation.ModelDistillationDetector'" in untrusted
    assert "chunked scores equal unchunked ones" in out


def check_vae_consistency_calibration(out):
    clean, attacked = (float(v) for v in _search(rf"CNN accuracy {NUMBER} clean -> {NUMBER} attacked", out).groups())
    assert attacked < clean and clean > 0.8
    for score in ("consistency (KL, default)", "consistency (disagreement)", "reconstruction error", "combined"):
        _fractions(_row(out, score, n_numbers=2))
    no_defense = _fractions(_row(out, "no defense (input)", n_numbers=2))
    assert no_defense == [clean, attacked]
    _fractions(_row(out, "corrected (reconstruction where flagged)", n_numbers=2))
    assert _fractions(_row(out, "flagged by the detector", n_numbers=2))[0] <= 0.2
    # Empty bins print nan.
    bins = re.findall(rf"^  \[{NUMBER}, {NUMBER}\):\s+(\d+) rows, loss (\S+), accuracy (\S+)$", out, re.MULTILINE)
    assert len(bins) == 5 and sum(int(b[2]) for b in bins) == 200  # every quick test digit in one bin
    noise_auroc = float(_search(rf"on clean digits; AUROC {NUMBER}", out)[1])
    assert noise_auroc > 0.9  # uniform noise is far off the digits' manifold


CHECKS = {name[len("check_"):]: check for name, check in globals().items() if name.startswith("check_")}


def test_every_example_has_a_check():
    assert sorted(CHECKS) == [script.stem for script in EXAMPLES]


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_quick(script, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(script), "--quick", "--out", str(tmp_path)])
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    CHECKS[script.stem](out)
    # Every figure it writes is a real image, and it names the figures it wrote.
    for path in sorted(tmp_path.rglob("*.png")):
        assert path.name in out, path.name
        image = matplotlib.image.imread(path)
        assert image.shape[0] >= 200 and image.shape[1] >= 300, (path.name, image.shape)
        assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 20, path.name  # not a blank canvas
