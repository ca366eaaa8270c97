"""The steps of the evaluation protocol, on one seed: split, fit, threshold, attack, observe.

Every detector's threshold is fixed on held-out clean rows before any attack;
each detector is then observed, row by row, on other clean rows and on
attacked and corrupted copies of them. The observations (scores, flags,
deployed labels per row) are what :mod:`._measures` turns into rates with
confidence intervals.
"""

import copy
import sys
import time
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from ..attacks import FGSM, PGD, AttackFailureWarning, AutoAttack, CarliniWagnerL2, check_attack_failure
from ..corruptions import CORRUPTIONS, corrupt
from ..metrics import adversarial_scores, deployed_predictions, harmfulness


class Progress:
    """Stage lines and tqdm bars on stderr when ``verbose`` (silent otherwise), as scikit-learn's ``verbose``."""

    def __init__(self, verbose):
        self.verbose = int(verbose)
        # verbose >= 2: each attack's own progress bar too.
        self.attack_verbose = int(self.verbose >= 2)

    def stage(self, message):
        if self.verbose:
            print(f"[skadv.evaluate] {message}", file=sys.stderr, flush=True)

    def bar(self, iterable, desc, total=None):
        if not self.verbose:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, file=sys.stderr, leave=False, dynamic_ncols=True)


def split_rows(y, *, threshold_size=0.2, test_size=0.3, random_state=None):
    """The rows :func:`evaluate` fits detectors on, fixes thresholds on and measures on.

    Stratified and seeded: ``test_size`` of all rows are test rows,
    ``threshold_size`` of the others fix the thresholds, the rest fit the
    detectors. :func:`evaluate` calls it with its own ``threshold_size``,
    ``test_size`` and each seed: train the model to protect on the ``fit``
    rows of the same call, and the threshold and test rows stay unseen by the
    classifier as well as by the detectors.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Labels (the strata).
    threshold_size : float in (0, 1), default=0.2
    test_size : float in (0, 1), default=0.3
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    split : :class:`~sklearn.utils.Bunch`
        ``fit``, ``threshold`` and ``test``: disjoint arrays of row indices.

    Examples
    --------
    >>> import numpy as np
    >>> from skadv.evaluation import split_rows
    >>> split = split_rows(np.repeat([0, 1], 50), random_state=0)
    >>> len(split.fit), len(split.threshold), len(split.test)
    (56, 14, 30)
    """
    y = np.asarray(y)
    rows = np.arange(len(y))
    rest, test = train_test_split(rows, test_size=test_size, stratify=y, random_state=random_state)
    fit, threshold = train_test_split(rest, test_size=threshold_size, stratify=y[rest], random_state=random_state)
    return Bunch(fit=fit, threshold=threshold, test=test)


def is_fitted(estimator):
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    except TypeError:  # not an estimator scikit-learn can check: take it as fitted (used as is)
        return True
    return True


def prepare(detector, *, seed, input_shape):
    """A private copy of a user's detector, with what the evaluation sets: never the user's object.

    Unfitted: a clone, seeded with ``seed`` and given ``input_shape`` where
    those parameters are None. Fitted: a deep copy, used as is.
    """
    if is_fitted(detector):
        return copy.deepcopy(detector), True
    detector = clone(detector)
    params = detector.get_params(deep=False)
    updates = {}
    if "random_state" in params and params["random_state"] is None:
        updates["random_state"] = seed
    if "input_shape" in params and params["input_shape"] is None and input_shape is not None:
        updates["input_shape"] = input_shape
    return detector.set_params(**updates), False


def fit_and_threshold(detector, fitted, X_fit, y_fit, X_threshold, fpr):
    """Fit (unless fitted) on clean rows, then fix the threshold so that ``fpr`` of ``X_threshold`` is flagged.

    Not ``contamination`` (in-sample, on the training rows): the same
    ``infer_threshold`` call for every detector. An estimator without
    ``infer_threshold`` keeps its own threshold. Returns the seconds taken and
    whether the threshold was set here.
    """
    start = time.perf_counter()
    if not fitted:
        detector.fit(X_fit, y_fit)  # detectors ignore y; DeepNeuralRejection trains its SVMs on it
    thresholded = hasattr(detector, "infer_threshold")
    if thresholded:
        detector.infer_threshold(X_threshold, threshold_perc=100 * (1 - fpr))
    return time.perf_counter() - start, thresholded


def observe(estimator, X, input_shape):
    """Per row of ``X``: adversarial score (NaN without one), flagged, and the deployed system's label."""
    deployed = deployed_predictions(estimator, X, input_shape=input_shape)
    if hasattr(estimator, "adversarial_score") or hasattr(estimator, "score_samples"):
        scores = adversarial_scores(estimator, X)
    else:
        scores = np.where(deployed.flagged, 1.0, 0.0)  # only the decision is known
    return Bunch(scores=np.asarray(scores, dtype=np.float64), flagged=np.asarray(deployed.flagged, dtype=bool),
                 labels=np.asarray(deployed.labels))


def non_adaptive_attacks(model, X, y, *, eps_values, budget, clip_values, input_shape, random_state, progress):
    """FGSM and PGD (L-inf) at each budget and C&W-L2, against the classifier alone: ``{key: X_adv}``."""
    common = {"clip_values": clip_values, "input_shape": input_shape, "verbose": progress.attack_verbose}
    attacks = {}
    for eps in eps_values:
        attacks[f"fgsm@{eps:g}"] = lambda eps=eps: FGSM(model, eps=eps, **common)
    for eps in eps_values:
        attacks[f"pgd@{eps:g}"] = lambda eps=eps: PGD(
            model, eps=eps, step_size=2.5 * eps / budget["pgd_steps"], max_iter=budget["pgd_steps"],
            random_state=random_state, **common)
    if budget["cw_iter"]:
        attacks["cw"] = lambda: CarliniWagnerL2(
            model, max_iter=budget["cw_iter"], binary_search_steps=budget["cw_search"],
            initial_const=budget["cw_const"], learning_rate=0.05, **common)
    return {key: make().generate(X, y) for key, make in progress.bar(attacks.items(), "non-adaptive attacks")}


def corrupted_rows(model, X, y, *, severities, clip_values, input_shape, random_state, progress):
    """Corrupted copies of the rows of ``X`` (every kind and severity), their source rows, harmful / harmless.

    Harmful: the classifier is right on the clean row and wrong on the
    corrupted one; harmless: right on both. The corruptions' strengths are
    defined on [0, 1]: rows in another ``clip_values`` range are mapped to
    [0, 1], corrupted and mapped back.
    """
    lo, hi = clip_values if clip_values is not None else (float(X.min()), float(X.max()))
    width = (hi - lo) or 1.0
    X01 = (X - lo) / width
    pred_clean = deployed_predictions(model, X, input_shape=input_shape).classifier_labels
    shape = input_shape if len(input_shape) == 3 else (1, *input_shape)
    out, sources, harmful, harmless = [], [], [], []
    kinds = [(kind, severity) for kind in CORRUPTIONS for severity in severities]
    for kind, severity in progress.bar(kinds, "corruptions"):
        X_bad = corrupt(X01, kind, severity, input_shape=shape, random_state=random_state)
        X_bad = (lo + width * X_bad).astype(X.dtype)
        harm = harmfulness(y, pred_clean, deployed_predictions(model, X_bad, input_shape=input_shape).classifier_labels)
        out.append(X_bad)
        sources.append(np.arange(len(X)))
        harmful.append(harm.harmful)
        harmless.append(harm.harmless)
    return Bunch(X=np.concatenate(out), rows=np.concatenate(sources), harmful=np.concatenate(harmful),
                 harmless=np.concatenate(harmless))


def adaptive_attack(detector, X, y, *, eps, budget, clip_values, input_shape, random_state, verbose=0):
    """AutoAttack on classifier + detector, and the attack-failure checks of that attack.

    The ensemble reports the "stalled" and "black_box" checks of its own run;
    :func:`~skadv.attacks.check_attack_failure` adds "unbounded" and
    "non_adaptive" on the first ``budget["n_check"]`` rows (Square is in the
    ensemble already).
    """
    attack = AutoAttack(
        detector, eps=eps, max_iter=budget["auto_iter"], n_restarts=budget["auto_restarts"],
        square_max_iter=budget["square_queries"], eot_samples=budget["eot"], random_state=random_state,
        clip_values=clip_values, input_shape=input_shape, verbose=verbose,
    )
    n_check = min(budget["n_check"], len(X))
    with warnings.catch_warnings():
        # The verdicts go into the report; no warning text in between.
        warnings.simplefilter("ignore", AttackFailureWarning)
        result = attack.run(X, y)
        checks = {}
        if n_check:
            report = check_attack_failure(attack, X[:n_check], y[:n_check], black_box=None, max_samples=n_check)
            checks.update(report.checks)
    checks.update(result.checks)
    return result.X_adv, checks


def verdict(checks):
    """One phrase for a set of attack-failure checks: which fired, or "none fired"."""
    fired = [name for name, check in checks.items() if check.fired]
    return ", ".join(fired) + " FIRED" if fired else "none fired"
