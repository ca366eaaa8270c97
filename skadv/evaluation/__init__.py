"""Evaluate detectors on your own model and data: one call, a report with confidence intervals.

:func:`evaluate` runs skadv's evaluation protocol (the one behind ``python -m
skadv demo``, ``benchmark`` and ``evaluate``): thresholds fixed on held-out clean
rows before any attack, clean cost, non-adaptive and adaptive attacks with their
failure checks, corruptions, and a bootstrap interval beside every rate. It
returns an :class:`EvaluationReport` (table, markdown, figure, HTML page).
"""

from ._evaluate import BUDGETS, DEFAULT_DETECTORS, describe_budget, evaluate
from ._protocol import split_rows
from ._report import EvaluationReport

__all__ = ["BUDGETS", "DEFAULT_DETECTORS", "EvaluationReport", "describe_budget", "evaluate", "split_rows"]
