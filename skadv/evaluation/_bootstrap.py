"""Bootstrap confidence intervals over test rows (and seeds), vectorised with numpy.

Every rate of the evaluation is a function of per-row arrays over the test rows:
a mean (FPR, accuracy, evasion), a ratio of sums (TPR: flagged among the
successful adversarial rows) or an AUROC (negatives and positives that each come
from a test row). One matrix of bootstrap counts, ``counts[b, i]`` = how often
test row ``i`` is drawn in resample ``b``, weights every statistic of every
detector: the replicates are *paired* (the same resampled rows for all), so the
difference between two detectors has its own interval.
"""

import numpy as np

# Most float64 weights one AUROC block of replicates holds (about 100 MB).
_BLOCK_VALUES = 12_000_000


def bootstrap_counts(n_rows, n_bootstrap, random_state):
    """``(n_bootstrap, n_rows)`` int32 counts: row ``i`` drawn ``counts[b, i]`` times in resample ``b``."""
    rng = np.random.default_rng(random_state)
    if n_rows == 0:
        return np.zeros((n_bootstrap, 0), dtype=np.int32)
    draws = rng.integers(0, n_rows, size=(n_bootstrap, n_rows))
    counts = np.zeros((n_bootstrap, n_rows), dtype=np.int32)
    np.add.at(counts, (np.arange(n_bootstrap)[:, None], draws), 1)
    return counts


def _divide(numerator, denominator):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def ratio(numerator, denominator, counts):
    """Point value and replicates of ``sum(numerator) / sum(denominator)`` over the rows of ``counts``.

    ``numerator`` and ``denominator`` are per-row arrays of the first
    ``len(numerator)`` test rows (an attack may cover only the first rows).
    NaN where the denominator is 0.
    """
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    sub = counts[:, : numerator.size]
    value = float(_divide(numerator.sum(), denominator.sum()))
    return value, _divide(sub @ numerator, sub @ denominator)


def mean(values, counts):
    """Point value and replicates of the mean of a per-row array (of the first ``len(values)`` test rows)."""
    values = np.asarray(values, dtype=np.float64)
    return ratio(values, np.ones_like(values), counts)


def auroc(scores_neg, rows_neg, scores_pos, rows_pos, counts):
    """Point value and replicates of the AUROC of positives against negatives, ties counted one half.

    Each score comes from a test row (``rows_*``: its index); in replicate ``b``
    it weighs ``counts[b, row]``. At unit weights this is
    :func:`skadv.metrics.detection_auroc` (the Mann-Whitney statistic). One
    sort of all scores serves every replicate: scores are grouped by value,
    each group's negative and positive weights summed per replicate
    (``np.add.reduceat``), and the AUROC is
    ``sum_g pos_g * (neg_below_g + neg_g / 2) / (sum pos * sum neg)``.
    """
    scores_neg = np.asarray(scores_neg, dtype=np.float64)
    scores_pos = np.asarray(scores_pos, dtype=np.float64)
    if scores_neg.size == 0 or scores_pos.size == 0:
        return np.nan, np.full(counts.shape[0], np.nan)
    scores = np.r_[scores_neg, scores_pos]
    is_pos = np.r_[np.zeros(scores_neg.size, bool), np.ones(scores_pos.size, bool)]
    rows = np.r_[np.asarray(rows_neg, dtype=np.intp), np.asarray(rows_pos, dtype=np.intp)]
    order = np.argsort(scores, kind="stable")
    scores, is_pos, rows = scores[order], is_pos[order], rows[order]
    starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])

    def statistic(weights):  # weights: (n_replicates, n_scores)
        neg = np.add.reduceat(np.where(is_pos, 0, weights), starts, axis=1)
        pos = np.add.reduceat(np.where(is_pos, weights, 0), starts, axis=1)
        neg_below = np.cumsum(neg, axis=1) - neg
        wins = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
        return _divide(wins, pos.sum(axis=1) * neg.sum(axis=1))

    value = float(statistic(np.ones((1, scores.size)))[0])
    # Blocks of replicates bound the memory of the (replicates, scores) weights.
    block = max(1, _BLOCK_VALUES // scores.size)
    replicates = np.concatenate([statistic(counts[start: start + block, rows].astype(np.float64))
                                 for start in range(0, counts.shape[0], block)])
    return value, replicates


def combine_seeds(values, replicates, n_bootstrap, random_state):
    """One value and replicate set over several seeds (hierarchical bootstrap).

    ``values``: the point value of each seed; ``replicates``: ``(n_seeds,
    n_bootstrap)``, each seed's row replicates. The value is the mean over
    seeds; replicate ``b`` draws seeds with replacement and, for each, one of
    that seed's row replicates, and averages them: the interval holds the
    variation between seeds (split, training, attacks) and between test rows.
    With one seed the row replicates are returned as they are.
    """
    values = np.asarray(values, dtype=np.float64)
    replicates = np.asarray(replicates, dtype=np.float64)
    if values.size == 1:
        return float(values[0]), replicates[0]
    rng = np.random.default_rng(random_state)
    n_seeds = values.size
    seeds = rng.integers(0, n_seeds, size=(n_bootstrap, n_seeds))
    columns = rng.integers(0, replicates.shape[1], size=(n_bootstrap, n_seeds))
    drawn = replicates[seeds, columns]
    finite = np.isfinite(drawn)
    combined = _divide(np.where(finite, drawn, 0).sum(axis=1), finite.sum(axis=1))
    value = float(_divide(np.nansum(values), np.isfinite(values).sum()))
    return value, combined


def interval(value, replicates, confidence):
    """Percentile interval ``(lo, hi)`` of the replicates, widened to hold ``value`` if it falls outside.

    NaN replicates (e.g. a TPR of a resample without a successful adversarial
    row) are left out; the interval is NaN when the value or every replicate is.
    """
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0 or not np.isfinite(value):
        return np.nan, np.nan
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return float(min(lo, value)), float(max(hi, value))
