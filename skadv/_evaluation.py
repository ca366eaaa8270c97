"""Evaluation at fixed thresholds, shared by ``python -m skadv demo`` and ``python -m skadv benchmark``.

Protocol: every detector's threshold is fixed on held-out clean rows (5 % false
positives there) before any attack; each detector is then measured on other
clean rows (its false-positive rate and clean accuracy with rejection, the cost
of deploying it) and on attacked rows at that threshold: the evasion rate
(misclassified and not flagged), the share of successful adversarial examples it
flags (TPR) and their AUROC. The adaptive attack is the AutoAttack ensemble,
checked with the indicators of attack failure.
"""

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def section(title):
    print(f"\n== {title} " + "=" * max(0, 66 - len(title)), flush=True)


@dataclass
class Defense:
    """What the evaluation needs of a defended classifier.

    ``scores``: adversarial scores (higher = more adversarial); ``flagged``: rows
    flagged / rejected at the fixed threshold; ``labels``: the deployed
    classifier's labels (DNR's own, the protected model's otherwise);
    ``estimator``: what adaptive attacks target.
    """

    scores: Callable
    flagged: Callable
    labels: Callable
    estimator: object


def detector_defense(det):
    from .metrics import adversarial_scores, deployed_predictions

    return Defense(
        scores=lambda X: adversarial_scores(det, X),
        flagged=lambda X: np.asarray(det.predict(X)) == -1,
        # The deployed system's label of each row, flagged or not (DNR's own, the protected model's otherwise).
        labels=lambda X: deployed_predictions(det, X).labels,
        estimator=det,
    )


def fit_at_fixed_threshold(detectors, X_fit, y_fit, X_val, threshold_perc=95, verbose=True):
    """Fit each detector on clean rows, then fix its threshold on the held-out clean rows ``X_val``.

    Not ``contamination`` (in-sample, on the training rows): ``threshold_perc`` % of
    ``X_val`` pass, the same call for all. Returns the seconds each took, by name.
    """
    seconds = {}
    for name, det in detectors.items():
        start = time.perf_counter()
        det.fit(X_fit, y_fit)  # detectors ignore y; DNR trains its SVMs on it
        det.infer_threshold(X_val, threshold_perc=threshold_perc)
        seconds[name] = time.perf_counter() - start
        if verbose:
            print(f"{name:18s} fitted in {seconds[name]:5.1f} s", flush=True)
    return seconds


def clean_row(defense, X, y):
    from .metrics import accuracy_with_rejection

    flagged = defense.flagged(X)
    return {
        "fpr": float(flagged.mean()),
        "clean_acc_rej": accuracy_with_rejection(y, defense.labels(X), rejected=flagged),
    }


def attack_row(defense, clean_scores, X_adv, y):
    """Evasion, TPR and AUROC at the fixed threshold; positives: the successful adversarial examples."""
    from .metrics import detection_auroc, evasion_rate

    labels = defense.labels(X_adv)
    wrong = labels != y
    flagged = defense.flagged(X_adv)
    successful = defense.scores(X_adv)[wrong]
    return {
        "evasion": evasion_rate(y, labels, rejected=flagged),
        "tpr": float(flagged[wrong].mean()) if wrong.any() else np.nan,
        "auroc": detection_auroc(clean_scores, successful) if wrong.any() else np.nan,
        "n_successful": int(wrong.sum()),
    }


def corruption_auroc(defense, X_corrupted, harmful, harmless):
    """AUROC of harmful (positives) against harmless (negatives) corrupted rows; nan without both."""
    from .metrics import detection_auroc

    if not (harmful.any() and harmless.any()):
        return np.nan
    scores = defense.scores(X_corrupted)
    return detection_auroc(scores[harmless], scores[harmful])


def adaptive_attack(det, X, y, *, eps, max_iter, square_max_iter, eot_samples, n_check, random_state):
    """AutoAttack on classifier + detector, and the attack-failure checks of that attack.

    The ensemble reports the "stalled" and "black_box" checks of its own run;
    :func:`~skadv.attacks.check_attack_failure` adds "unbounded" and
    "non_adaptive" on the first ``n_check`` rows (Square is in the ensemble already).
    """
    from .attacks import AttackFailureWarning, AutoAttack, check_attack_failure

    attack = AutoAttack(
        det, eps=eps, max_iter=max_iter, square_max_iter=square_max_iter,
        eot_samples=eot_samples, random_state=random_state,
    )
    with warnings.catch_warnings():
        # The verdicts are printed with the table; no warning text in between.
        warnings.simplefilter("ignore", AttackFailureWarning)
        result = attack.run(X, y)
        report = check_attack_failure(attack, X[:n_check], y[:n_check], black_box=None, max_samples=n_check)
    checks = {**report.checks, **result.checks}
    return result.X_adv, checks


def verdict(checks):
    """One phrase for a set of attack-failure checks: which fired, or "none fired"."""
    fired = [name for name, check in checks.items() if check.fired]
    return ", ".join(fired) + " FIRED" if fired else "none fired"


def print_checks(checks_by_detector):
    for name, checks in checks_by_detector.items():
        for check_name, check in checks.items():
            value = check.value if isinstance(check.value, (int, float)) else float("nan")
            state = "FIRED" if check.fired else "ok"
            print(f"{name:18s} {check_name:13s} {state:5s} value {value:7.3f}")
            if check.fired:
                print(f"{'':18s} {check.message}")
