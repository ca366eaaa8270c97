"""Rates with bootstrap replicates from the per-row observations of one seed.

Definitions (the same as :mod:`skadv.metrics`, at the fixed threshold):

- ``clean_fpr``: share of clean test rows flagged;
- ``clean_acc_rej``: clean accuracy with rejection (a flagged clean row is an error);
- per attack: ``evasion`` (misclassified by the deployed system and not flagged),
  ``tpr`` (share of the successful adversarial rows, i.e. misclassified, that are
  flagged) and ``auroc`` (their scores against those of the clean test rows);
- ``harmful_auroc``: harmful against harmless corrupted rows.
"""

import numpy as np

from ._bootstrap import auroc, mean, ratio

#: Which way is better for the detector, per measure (the last part of a metric's name).
HIGHER_IS_BETTER = {"fpr": False, "acc_rej": True, "evasion": False, "tpr": True, "auroc": True}


def better_direction(metric):
    for suffix, higher in HIGHER_IS_BETTER.items():
        if metric.endswith(suffix):
            return higher
    raise KeyError(metric)


def attack_measures(prefix, clean, attacked, y, counts):
    """``{prefix_evasion, prefix_tpr, prefix_auroc: (value, replicates)}`` on the first ``len(y)`` test rows."""
    wrong = attacked.labels != y
    evades = wrong & ~attacked.flagged
    successful = np.flatnonzero(wrong)
    return {
        f"{prefix}_evasion": mean(evades, counts),
        f"{prefix}_tpr": ratio(attacked.flagged & wrong, wrong, counts),
        f"{prefix}_auroc": auroc(clean.scores, np.arange(clean.scores.size),
                                            attacked.scores[successful], successful, counts),
    }


def detector_measures(obs, y_test, attacked_y, corrupted, counts):
    """Every metric of one detector on one seed: ``{metric: (value, replicates)}``.

    ``obs``: the detector's observations (``clean``, ``attacks``, ``corrupted``,
    ``adaptive``); ``attacked_y``: labels of the attacked rows (the first test
    rows); ``corrupted``: the corruption rows' sources and harm labels, or None.
    """
    clean = obs.clean
    measures = {
        "clean_fpr": mean(clean.flagged, counts),
        "clean_acc_rej": mean((clean.labels == y_test) & ~clean.flagged, counts),
    }
    for key, attacked in obs.attacks.items():
        measures.update(attack_measures(key, clean, attacked, attacked_y[: attacked.labels.size], counts))
    if corrupted is not None:
        scores = obs.corrupted.scores
        measures["harmful_auroc"] = auroc(
            scores[corrupted.harmless], corrupted.rows[corrupted.harmless],
            scores[corrupted.harmful], corrupted.rows[corrupted.harmful], counts,
        )
    for key, attacked in obs.adaptive.items():
        measures.update(attack_measures(key, clean, attacked, attacked_y[: attacked.labels.size], counts))
    return measures
