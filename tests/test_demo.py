"""`python -m skadv demo --quick`: the results table it prints and the figures it writes."""

import os
import re

import matplotlib.image
import numpy as np

from skadv.__main__ import main

FIGURES = ("score_histograms.png", "security_evaluation.png", "attack_trace_dnr.png", "vae_distinct_labels.png")
DETECTORS = ("AdversarialAE", "ModelDistillation", "VAE", "DNR")
ATTACKS = ("FGSM eps=0.1", "PGD eps=0.2", "PGD eps=0.2 adaptive")
NUMBER = r"(\d\.\d{3})"
# detector, attack, AUROC, TPR@5%, no def., w/ det. and (for detectors with correct()) corr.
ROW = re.compile(
    rf"^(\w+)\s+((?:FGSM|PGD) eps=0\.\d(?: adaptive)?)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}(?:\s+{NUMBER})?\s*$"
)


def test_quick_demo_prints_the_results_table_and_writes_real_figures(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out

    matches = [m for m in map(ROW.match, out.splitlines()) if m]
    rows = {(m[1], m[2]): [float(v) for v in m.groups()[2:] if v is not None] for m in matches}
    assert sorted(rows) == sorted((d, a) for d in DETECTORS for a in ATTACKS)
    for (detector, attack), values in rows.items():
        assert all(0.0 <= v <= 1.0 for v in values), (detector, attack, values)
        no_defense, with_detection = values[2:4]
        # Defended = flagged or classified right: never below the classifier alone.
        assert with_detection >= no_defense, (detector, attack)
    # The non-adaptive attacks hit the same classifier: the same accuracy on every row, as printed above the table.
    for attack in ("FGSM eps=0.1", "PGD eps=0.2"):
        accuracy = float(re.search(rf"^{re.escape(attack)}\s+classifier accuracy {NUMBER}$", out, re.MULTILINE)[1])
        assert {rows[(d, attack)][2] for d in DETECTORS} == {accuracy}
    # PGD at eps=0.2 is stronger than FGSM at eps=0.1 on the undefended classifier.
    assert rows[("DNR", "PGD eps=0.2")][2] < rows[("DNR", "FGSM eps=0.1")][2]

    assert sorted(os.listdir(tmp_path)) == sorted(FIGURES)
    for name in FIGURES:
        path = tmp_path / name
        assert str(path) in out  # the demo lists what it wrote
        image = matplotlib.image.imread(path)
        height, width, channels = image.shape
        assert height >= 200 and width >= 300 and channels in (3, 4), (name, image.shape)
        # Not a blank canvas: plotted marks leave many distinct colours.
        assert len(np.unique(image.reshape(-1, channels), axis=0)) > 20, name
