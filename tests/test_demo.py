"""`python -m skadv demo --quick`: the evaluation it prints, the report and the figures it writes."""

import matplotlib.image
import numpy as np

from skadv._cli._demo import run_demo

DETECTORS = ("MSP", "AdversarialAE", "ModelDistillation", "VAE", "DNR")
FIGURES = ("attack_trace_dnr.png", "score_histograms.png", "security_evaluation.png", "vae_distinct_labels.png")
REPORT = ("evaluation.csv", "evaluation.html", "evaluation.md", "evaluation.png")


def test_quick_demo_prints_the_evaluation_and_writes_real_figures(tmp_path, capsys):
    report = run_demo(out_dir=str(tmp_path), quick=True)
    out = capsys.readouterr().out

    assert [r["detector"] for r in report.records] == list(DETECTORS)
    assert report.settings["adaptive_eps"] == [0.1, 0.2]  # the security figure's curve: the table's own rows
    classifier = report.observations["MSP"]  # MSP's deployed labels are the classifier's
    for record in report.records:
        for metric in report.metrics:
            value, lo, hi = record[metric], record[f"{metric}_lo"], record[f"{metric}_hi"]
            assert np.isnan(value) or 0.0 <= lo <= value <= hi <= 1.0, (record["detector"], metric)
        assert 0.0 <= record["clean_fpr"] <= 0.15 and record["clean_acc_rej"] >= 0.7
        if record["detector"] != "DNR":  # DNR labels the rows itself; the others keep the classifier's label
            for attack in ("fgsm@0.1", "pgd@0.2"):
                attacked = classifier.attacks[attack]
                error = np.mean(attacked.labels != report.y_test[: attacked.labels.size])
                # Evading needs a misclassified row: at most the classifier's error under that attack.
                assert record[f"{attack}_evasion"] <= error + 1e-9, (record["detector"], attack)
        for eps in ("0.1", "0.2"):
            verdict = record[f"adaptive@{eps}_checks"]
            assert verdict == "none fired" or verdict.endswith(" FIRED"), verdict

    results = out[out.index("== results"):out.index("== attack-failure checks")]
    assert max(map(len, results.splitlines())) <= 100  # the table fits a 100-column terminal
    for name in DETECTORS:
        assert name in results
    assert "AutoAttack eps=0.2" in results and "PGD eps=0.2" in results
    for name in DETECTORS:  # the failure checks of the adaptive attack, one line each
        assert f"{name:18s} eps=0.2   unbounded" in out

    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == sorted(FIGURES + REPORT)
    for name in FIGURES + ("evaluation.png",):
        path = tmp_path / name
        assert str(path) in out  # the demo lists what it wrote
        image = matplotlib.image.imread(path)
        height, width, channels = image.shape
        assert height >= 200 and width >= 300 and channels in (3, 4), (name, image.shape)
        # Not a blank canvas: plotted marks leave many distinct colours.
        assert len(np.unique(image.reshape(-1, channels), axis=0)) > 20, name
