"""`python -m skadv demo --quick`: the results table it prints and the figures it writes."""

import re

import matplotlib.image
import numpy as np

from skadv.__main__ import main

DETECTORS = ("AdversarialAE", "ModelDistillation", "VAE", "DNR")
BASELINE = "MSP (baseline)"
NON_ADAPTIVE = ("FGSM eps=0.1", "PGD eps=0.2")
NUMBER = r"(\d\.\d{3})"
# "detector  clean FPR  clean acc | attack  evasion  TPR  AUROC  failure checks"; a detector's
# later rows leave the left part blank.
ROW = re.compile(
    rf"^(?:(\S.*?)\s+{NUMBER}\s+{NUMBER}|\s+) \| (\S.*?)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s*(.*)$"
)


def _table(out):
    """{(detector, attack): (evasion, TPR, AUROC, verdict)} and {detector: (clean FPR, clean accuracy)}."""
    rows, clean, detector = {}, {}, None
    for match in filter(None, map(ROW.match, out.splitlines())):
        name, fpr, accuracy, attack, evasion, tpr, auroc, verdict = match.groups()
        if name is not None:
            detector = name
            clean[detector] = (float(fpr), float(accuracy))
        rows[(detector, attack)] = (float(evasion), float(tpr), float(auroc), verdict)
    return rows, clean


def test_quick_demo_prints_the_results_table_and_writes_real_figures(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out

    rows, clean = _table(out)
    assert sorted(clean) == sorted((BASELINE, *DETECTORS))
    for fpr, accuracy in clean.values():
        assert 0.0 <= fpr <= 0.25 and 0.5 <= accuracy <= 1.0  # thresholds at 5 % FPR on held-out rows
    attacked_accuracy = {
        attack: float(re.search(rf"^{re.escape(attack)}\s+classifier accuracy {NUMBER}$", out, re.MULTILINE)[1])
        for attack in NON_ADAPTIVE
    }
    assert attacked_accuracy["PGD eps=0.2"] < attacked_accuracy["FGSM eps=0.1"]
    for detector in (BASELINE, *DETECTORS):
        adaptive = [attack for (name, attack) in rows if name == detector and attack not in NON_ADAPTIVE]
        # The baseline and every detector are attacked adaptively, by AutoAttack.
        assert len(adaptive) == 1, (detector, adaptive)
        for attack in (*NON_ADAPTIVE, *adaptive):
            evasion, tpr, auroc, verdict = rows[(detector, attack)]
            assert all(0.0 <= v <= 1.0 for v in (evasion, tpr, auroc)), (detector, attack)
            if attack in NON_ADAPTIVE:
                if detector != "DNR":  # DNR labels the rows itself; the others keep the classifier's label
                    # Evading needs a misclassified row: at most the classifier's error under that attack.
                    assert evasion <= 1 - attacked_accuracy[attack] + 1e-9, (detector, attack)
                assert verdict == ""
            else:
                assert attack.startswith("AutoAttack eps=0.2")
                assert verdict == "none fired" or verdict.endswith(" FIRED"), verdict
        # The failure checks of the adaptive attack, one line each.
        checks = re.findall(rf"^{re.escape(detector)}\s+\w+\s+(ok|FIRED)\s+value\s+\S+$", out, re.MULTILINE)
        assert checks, detector

    figures = sorted(tmp_path.glob("*.png"))
    assert len(figures) >= 4
    assert sorted(path.name for path in tmp_path.iterdir()) == [path.name for path in figures]
    for path in figures:
        assert str(path) in out  # the demo lists what it wrote
        image = matplotlib.image.imread(path)
        height, width, channels = image.shape
        assert height >= 200 and width >= 300 and channels in (3, 4), (path.name, image.shape)
        # Not a blank canvas: plotted marks leave many distinct colours.
        assert len(np.unique(image.reshape(-1, channels), axis=0)) > 20, path.name
