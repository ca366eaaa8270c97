"""Security evaluation curves and an attack-based scorer for model selection."""

import copy
import sys
from numbers import Real

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import Bunch
from tqdm import tqdm

from .._core import warn_at_caller
from ..attacks import AutoAttack, BaseAttack, check_attack_failure
from ..utils import resolve_attack_surface
from ._detection import (
    accuracy_with_rejection,
    detection_auroc,
    evasion_rate,
    tpr_at_threshold,
)
from ._scores import adversarial_scores, detection_threshold

__all__ = ["deployed_predictions", "make_attack_scorer", "security_evaluation"]


def _make_attack(attack, target, **params):
    """An attack instance on ``target`` from an attack class or a template instance."""
    if isinstance(attack, type) and issubclass(attack, BaseAttack):
        return attack(target, **params)
    if isinstance(attack, BaseAttack):
        # Never mutate the user's template: build a new one with its parameters.
        template = attack.get_params(deep=False)
        template.pop("target")
        return type(attack)(target, **{**template, **params})
    raise ValueError(
        "attack must be a skadv attack class (e.g. skadv.attacks.PGD) or an "
        f"instance of one; got {attack!r}."
    )


def _is_identity_step(step):
    """Whether a Pipeline step leaves X unchanged ('passthrough', None, FunctionTransformer())."""
    if step is None or (isinstance(step, str) and step == "passthrough"):
        return True
    if isinstance(step, FunctionTransformer):
        return step.func is None
    if isinstance(step, Pipeline):
        return all(_is_identity_step(inner) for _, inner in step.steps)
    return False


def _attackable_detector(estimator):
    """The estimator an attack targets: ``estimator``, or a Pipeline's final detector.

    An attack needs gradients from the detector's output back to the input
    the Pipeline receives. scikit-learn transformers compute in numpy, so no
    gradient flows through them: a Pipeline can be attacked only when every
    step before its detector leaves X unchanged; the detector then sees the
    Pipeline's own input and is attacked directly.
    """
    if not isinstance(estimator, Pipeline):
        return estimator
    *head, (_, final) = estimator.steps
    for name, step in head:
        if not _is_identity_step(step):
            raise ValueError(
                f"Cannot attack this Pipeline: its step {name!r} ({type(step).__name__}) transforms "
                "X before the detector outside torch, so no gradient reaches the Pipeline's input. "
                "Only identity steps ('passthrough', None, FunctionTransformer() without func) may "
                "precede the detector; do the preprocessing in torch instead (inside the protected "
                "model, or as the detector's preprocess_fn)."
            )
    return _attackable_detector(final)


def deployed_predictions(estimator, X, *, input_shape=None, batch_size=256):
    """What a defended classifier outputs for ``X``: the classifier's labels, the system's, and flags.

    One definition of the deployed decision for every estimator, read from its
    attack surface (``attack_surface()``): ``labels`` is the argmax of the
    surface's class columns (the protected classifier's label for a skadv
    detector, the combiner's for :class:`~skadv.DeepNeuralRejection`) and
    ``flagged`` follows ``predict`` (-1 = flagged / rejected) where the
    estimator has one, else the surface's flagged column (argmax == K). A plain
    torch classifier flags nothing.

    Parameters
    ----------
    estimator : fitted estimator implementing ``attack_surface()``, torch.nn.Module or fitted skorch net
        A :class:`~sklearn.pipeline.Pipeline` of identity steps ending in one is accepted.
    X : array-like of shape (n_samples, n_features) or (n_samples, ...)
    input_shape : tuple of int, default=None
        Shape of one input as the model expects it (None: the estimator's).
    batch_size : int, default=256

    Returns
    -------
    predictions : :class:`~sklearn.utils.Bunch`
        Arrays of shape (n_samples,): ``classifier_labels`` (the protected
        classifier alone, no defense), ``labels`` (the defended system's label
        of each row, flagged or not) and ``flagged`` (bool). A row evades when
        ``labels != y`` and not ``flagged``.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from skadv.metrics import deployed_predictions
    >>> model = torch.nn.Linear(4, 3)
    >>> pred = deployed_predictions(model, np.zeros((5, 4), dtype=np.float32))
    >>> pred.flagged.tolist()
    [False, False, False, False, False]
    """
    estimator = _attackable_detector(estimator)
    X = np.asarray(X)
    surface = resolve_attack_surface(estimator, X, input_shape=input_shape)
    classifier_labels = surface.indices_to_labels(
        surface.classifier_only().scores(X, batch_size=batch_size).argmax(axis=1)
    )
    if surface.reject_index is None:
        return Bunch(classifier_labels=classifier_labels, labels=classifier_labels,
                     flagged=np.zeros(X.shape[0], dtype=bool))
    # A randomized surface draws from torch's global generator: leave the caller's stream as it was.
    devices = [surface.device] if surface.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=surface.stochastic):
        scores = surface.scores(X, batch_size=batch_size)
    labels = surface.indices_to_labels(scores[:, : surface.n_classes].argmax(axis=1))
    if hasattr(estimator, "predict"):
        flagged = np.asarray(estimator.predict(X)) == -1
    else:
        flagged = scores.argmax(axis=1) == surface.reject_index
    return Bunch(classifier_labels=classifier_labels, labels=labels, flagged=flagged)


# check_attack_failure's parameters that security_evaluation runs by default: the checks
# that need no extra attack run (stalled, monotone), and adaptive vs non-adaptive (one run).
_DEFAULT_CHECKS = {"unbounded": False, "black_box": None, "non_adaptive": True}


def security_evaluation(
    estimator, attack_cls, X, y, eps_values, *, adaptive=True, failure_checks=True, verbose=0, **attack_params
):
    """Accuracy, detection and evasion under attack as a function of the attack budget.

    For each ``eps`` the inputs are attacked with
    ``attack_cls(estimator, eps=eps, adaptive=adaptive, **attack_params)``
    (``eps == 0`` means the clean inputs) and the protected classifier and
    the detector are measured on the result. Against an estimator that
    implements the attack protocol (``attack_surface()``, every skadv
    detector) the attack is adaptive by default: it targets classifier and
    detector together, which is the honest evaluation (non-adaptive attacks
    overstate every detector).

    Fix the detector's threshold beforehand on held-out clean rows
    (``detector.infer_threshold(X_val, 95)``): a threshold from
    ``contamination`` is in-sample (set on the training rows) and flags more
    than its share of new clean rows. The attack targets that threshold,
    and every number here is measured at it. The headline number is
    ``evasion_rate``; always report it next to ``clean_accuracy_with_rejection``
    (the clean cost of the defense), since rejecting everything evades
    nothing.

    The indicators of attack failure (:func:`~skadv.attacks.check_attack_failure`)
    run on the evaluation: evasion must not drop while the budget grows
    ("monotone", from the curve itself), the attack's loss must move on the
    rows it fails on ("stalled") and, for an adaptive attack, it must evade
    at least as often as the same attack run non-adaptively
    ("non_adaptive"). Each check that fires issues an
    :class:`~skadv.attacks.AttackFailureWarning` naming it and what to try.

    Parameters
    ----------
    estimator : fitted estimator implementing ``attack_surface()``, torch.nn.Module or fitted skorch net
        What to evaluate. For a plain model only ``accuracy`` is measured. A
        :class:`~sklearn.pipeline.Pipeline` ending in an attackable estimator
        is accepted when its earlier steps leave X unchanged (see
        :func:`make_attack_scorer`).
    attack_cls : skadv attack class or instance
        E.g. :class:`skadv.attacks.AutoAttack` (the strongest) or
        :class:`skadv.attacks.PGD`. An instance serves as a template of
        parameters (it is not modified).
    X : array-like of shape (n_samples, n_features)
        Clean inputs, e.g. a held-out test set.
    y : array-like of shape (n_samples,)
        True labels of ``X``.
    eps_values : array-like of float
        Attack budgets to evaluate, e.g. ``np.linspace(0, 0.3, 7)``.
    adaptive : bool, default=True
        Attack classifier and detector together (True) or the classifier
        alone (False). Ignored for plain models.
    failure_checks : bool or dict, default=True
        Run the attack-failure checks at the largest budget (on at most 100
        rows): True runs "stalled", "monotone" and "non_adaptive"; a dict
        passes further parameters to :func:`~skadv.attacks.check_attack_failure`
        (e.g. ``{"unbounded": True, "black_box": "auto"}`` for every check);
        False runs none.
    verbose : int, default=0
        If non-zero, show a progress bar on stderr, one step per budget, and
        pass ``verbose`` on to the attack (its own progress, unless
        ``attack_params`` set it). Silent by default.
    **attack_params : dict
        Further parameters of the attack (``step_size``, ``max_iter``, ...).

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        With arrays of shape ``(n_eps,)``:

        - ``eps_values``
        - ``accuracy``: accuracy of the classifier alone (no defense);
        - ``detection_rate``: share of inputs the detector flags / rejects
          (NaN for a plain model);
        - ``accuracy_with_rejection``: share of inputs handled correctly with
          the defense (:func:`accuracy_with_rejection`; at ``eps == 0`` a
          rejected clean input is an error, under attack it is defended);
        - ``evasion_rate``: share of inputs misclassified *and* not flagged
          (:func:`evasion_rate`, the attacker's success against the defended
          system);

        ``clean_accuracy_with_rejection`` (float, on the clean inputs: the
        clean cost), ``adaptive`` (bool, whether the attack saw the
        detector), ``attack`` (the attack's class name), ``checks`` (dict
        check name -> Bunch(``fired``, ``value``, ``message``); empty when
        ``failure_checks=False``) and ``fired`` (names of the checks that
        fired).

    See Also
    --------
    skadv.plotting.SecurityEvaluationDisplay : Plot of the result.
    skadv.attacks.check_attack_failure : The checks, with all their options.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from skadv.attacks import PGD
    >>> from skadv.metrics import security_evaluation
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(4, 3)
    >>> X = np.random.RandomState(0).rand(30, 4).astype(np.float32)
    >>> y = model(torch.as_tensor(X)).argmax(1).numpy()
    >>> res = security_evaluation(model, PGD, X, y, [0.0, 0.1, 0.5],
    ...                           step_size=0.05, max_iter=10, random_state=0)
    >>> res.accuracy[0], bool(res.accuracy[2] < res.accuracy[0])
    (np.float64(1.0), True)
    >>> res.fired
    []
    """
    estimator = _attackable_detector(estimator)
    X = np.asarray(X)
    y = np.asarray(y)
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"X and y have inconsistent numbers of samples: {X.shape[0]} and {y.shape[0]}."
        )
    eps_values = np.asarray(eps_values, dtype=np.float64).ravel()
    if eps_values.size == 0 or np.any(eps_values < 0) or not np.all(np.isfinite(eps_values)):
        raise ValueError(f"eps_values must be finite and non-negative; got {eps_values!r}.")
    if not isinstance(failure_checks, (bool, dict)):
        raise ValueError(  # noqa: TRY004 - a parameter error, as scikit-learn reports them
            f"failure_checks must be a bool or a dict of parameters; got {failure_checks!r}."
        )
    if verbose and "verbose" not in attack_params:
        attack_params = {**attack_params, "verbose": verbose}
    attack_name = attack_cls.__name__ if isinstance(attack_cls, type) else type(attack_cls).__name__
    # Refuse inputs outside the attack's box before any work (the attack would clip them far beyond eps).
    strongest = _make_attack(attack_cls, estimator, eps=float(eps_values.max()), adaptive=adaptive, **attack_params)
    strongest.check_input_range(X)
    input_shape = attack_params.get("input_shape")
    clean = deployed_predictions(estimator, X, input_shape=input_shape)
    is_detector = resolve_attack_surface(estimator, X[:1], input_shape=input_shape).reject_index is not None

    keys = ["accuracy", "detection_rate", "accuracy_with_rejection", "evasion_rate"]
    curves = {key: np.full(eps_values.size, np.nan) for key in keys}
    progress = tqdm(
        eps_values,
        desc=f"security_evaluation: {attack_name} on {X.shape[0]} rows",
        unit="ε",
        disable=not verbose,
        file=sys.stderr,
        mininterval=0.5,
        dynamic_ncols=True,
    )
    for i, eps in enumerate(progress):
        progress.set_postfix_str(f"ε={eps:g}")
        if eps == 0:
            pred = clean
        else:
            attack = _make_attack(attack_cls, estimator, eps=float(eps), adaptive=adaptive, **attack_params)
            pred = deployed_predictions(estimator, attack.generate(X, y), input_shape=input_shape)
        curves["accuracy"][i] = np.mean(pred.classifier_labels == y)
        if is_detector:
            curves["detection_rate"][i] = pred.flagged.mean()
        curves["accuracy_with_rejection"][i] = accuracy_with_rejection(
            y, pred.labels, rejected=pred.flagged, attacked=bool(eps > 0)
        )
        curves["evasion_rate"][i] = evasion_rate(y, pred.labels, rejected=pred.flagged)

    checks = {}
    attacked = eps_values > 0
    if failure_checks is not False and attacked.any():
        params = {**_DEFAULT_CHECKS, **(failure_checks if isinstance(failure_checks, dict) else {})}
        params.setdefault("eps_values", eps_values)
        if np.array_equal(params["eps_values"], eps_values):
            params.setdefault("evasion_curve", curves["evasion_rate"])
        checks = check_attack_failure(strongest, X, y, **params).checks

    return Bunch(
        eps_values=eps_values,
        **curves,
        clean_accuracy_with_rejection=accuracy_with_rejection(y, clean.labels, rejected=clean.flagged),
        adaptive=bool(adaptive and is_detector),
        attack=attack_name,
        checks=checks,
        fired=[name for name, check in checks.items() if check.fired],
    )


_METRICS = ("auroc", "tpr", "tpr_at_fpr", "accuracy_with_rejection", "evasion_rate")


class _AttackScorer:
    """Scorer ``(estimator, X, y) -> float`` attacking each evaluated fold."""

    def __init__(self, attack, metric, fpr, successful_only, adaptive, attack_params):
        self.attack = attack
        self.metric = metric
        self.fpr = fpr
        self.successful_only = successful_only
        self.adaptive = adaptive
        self.attack_params = attack_params

    def __call__(self, estimator, X, y=None):
        estimator = _attackable_detector(estimator)
        X = np.asarray(X)
        has_reject = hasattr(estimator, "attack_surface") and (
            resolve_attack_surface(estimator, X[:1], input_shape=self.attack_params.get("input_shape")).reject_index
            is not None
        )
        if not has_reject:
            raise ValueError(
                "make_attack_scorer scores detectors (alone or as the last step of a Pipeline); "
                f"got {type(estimator).__name__}, which exposes no adversarial score (no attack_surface() "
                "with a flagged column)."
            )
        if self.fpr is not None:
            if not hasattr(estimator, "infer_threshold"):
                raise ValueError(
                    f"{type(estimator).__name__} has no infer_threshold, so the scorer cannot fix its threshold "
                    "at fpr on the evaluated clean rows; pass fpr=None to keep the detector's own threshold."
                )
            # The threshold every number is measured at, fixed on the fold's held-out clean
            # rows, and the one the attack targets (on a copy: the fold's estimator stays as is).
            estimator = copy.deepcopy(estimator).infer_threshold(X, threshold_perc=100.0 * (1.0 - self.fpr))
        attack = _make_attack(self.attack, estimator, adaptive=self.adaptive, **self.attack_params)
        X_attacked = attack.generate(X, y)
        input_shape = self.attack_params.get("input_shape")
        clean = deployed_predictions(estimator, X, input_shape=input_shape)
        attacked = deployed_predictions(estimator, X_attacked, input_shape=input_shape)
        reference = clean.classifier_labels if y is None else np.asarray(y)
        if self.metric in ("accuracy_with_rejection", "evasion_rate"):
            if self.metric == "evasion_rate":
                # Higher is better for a scorer: minus the attacker's success.
                return -evasion_rate(reference, attacked.labels, rejected=attacked.flagged)
            # Clean and attacked rows together: rejecting everything scores at most 0.5.
            return accuracy_with_rejection(
                np.r_[reference, reference],
                np.r_[clean.labels, attacked.labels],
                rejected=np.r_[clean.flagged, attacked.flagged],
                attacked=np.r_[np.zeros(len(X), bool), np.ones(len(X), bool)],
            )
        scores_attacked = adversarial_scores(estimator, X_attacked)
        if self.successful_only:
            # Positives are only the attacked inputs that fool the classifier.
            fooled = attacked.classifier_labels != reference
            if not fooled.any():
                warn_at_caller(
                    "The attack fooled the classifier on no input of this fold; "
                    "the detection score is undefined (NaN).",
                    UserWarning,
                )
                return np.nan
            scores_attacked = scores_attacked[fooled]
        if self.metric == "auroc":
            return detection_auroc(adversarial_scores(estimator, X), scores_attacked)
        threshold = detection_threshold(estimator)
        return tpr_at_threshold(scores_attacked, np.inf if threshold is None else threshold)

    def __repr__(self):
        name = self.attack.__name__ if isinstance(self.attack, type) else type(self.attack).__name__
        params = ", ".join(f"{k}={v!r}" for k, v in self.attack_params.items())
        return (
            f"make_attack_scorer({name}, metric={self.metric!r}, fpr={self.fpr!r}, "
            f"successful_only={self.successful_only}, adaptive={self.adaptive}"
            + (f", {params})" if params else ")")
        )


def make_attack_scorer(
    attack_cls=AutoAttack, *, metric="auroc", fpr=0.05, successful_only=True, adaptive=True, **attack_params
):
    """Scorer that attacks each evaluated fold and measures the defended system.

    The returned callable ``scorer(detector, X, y=None)`` first fixes the
    detector's threshold on the evaluated fold's clean rows ``X`` (at
    ``fpr`` false positives, on a copy), then attacks ``X`` with
    ``attack_cls(detector, **attack_params)`` (adaptive: against that
    threshold) and measures at that same threshold. Used as ``scoring=`` of
    :class:`~sklearn.model_selection.GridSearchCV` it tunes a detector
    fitted on clean data alone: detectors ignore ``y`` in ``fit``, and the
    scorer uses ``y`` (when given) as the true labels to attack.

    .. warning::
       Do not report a detector's robustness with the attack it was tuned
       against: tuning rewards that attack's blind spots (a setting can look
       far more robust under PGD and not be under APGD). Tune with one
       attack and evaluate the chosen detector on held-out data with another,
       stronger one (the :class:`~skadv.attacks.AutoAttack` ensemble, the
       default, and :func:`security_evaluation`), as in the example below.

    ``detector`` may also be a :class:`~sklearn.pipeline.Pipeline` whose last
    step is a detector, provided every earlier step leaves X unchanged
    (``'passthrough'``, None or ``FunctionTransformer()`` without ``func``):
    the final detector is then attacked on the Pipeline's input. Any other
    step raises a ValueError, because scikit-learn transformers compute
    outside torch and no gradient passes through them; do such
    preprocessing in torch (in the protected model or the detector's
    ``preprocess_fn``).

    Parameters
    ----------
    attack_cls : skadv attack class or instance, default=AutoAttack
        The attack; an instance serves as a template. The default ensemble
        is the strongest and the slowest; pass e.g. ``max_iter`` and
        ``square_max_iter`` to bound its cost.
    metric : {"auroc", "tpr", "tpr_at_fpr", "accuracy_with_rejection", "evasion_rate"}, default="auroc"
        - "auroc": :func:`detection_auroc` of the attacked inputs against the
          clean ones (threshold-free);
        - "tpr" (alias "tpr_at_fpr"): :func:`tpr_at_threshold`, the share of
          attacked inputs the detector flags at its threshold fixed at
          ``fpr`` (not re-read off a ROC curve);
        - "accuracy_with_rejection": :func:`accuracy_with_rejection` on the
          clean and the attacked inputs together (a rejected clean input is
          an error, a rejected attacked one is defended), so rejecting
          everything scores at most 0.5 and cannot win;
        - "evasion_rate": minus :func:`evasion_rate` of the attacked inputs
          (higher is better; gameable by rejecting everything, so look at
          the clean cost too).
    fpr : float in [0, 1) or None, default=0.05
        False-positive rate on the fold's clean rows at which the threshold
        is fixed (``infer_threshold(X, 100 * (1 - fpr))``). None keeps the
        detector's own threshold (from ``contamination``, in-sample, or set
        by the user).
    successful_only : bool, default=True
        For "auroc" and "tpr": count as positives only the attacked inputs
        that fool the classifier (the adversarial examples); False counts
        every attacked input, failed ones included, which mixes attack
        strength into the detection score.
    adaptive : bool, default=True
        Attack the classifier and the detector together (adaptive) or the
        classifier alone.
    **attack_params : dict
        Parameters of the attack, e.g. ``eps=0.1``.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y=None) -> float``, higher is better.

    Examples
    --------
    >>> from skadv.attacks import AutoAttack, PGD
    >>> from skadv.metrics import make_attack_scorer
    >>> tuning = make_attack_scorer(PGD, eps=0.1, max_iter=10, random_state=0)
    >>> tuning  # doctest: +NORMALIZE_WHITESPACE
    make_attack_scorer(PGD, metric='auroc', fpr=0.05, successful_only=True, adaptive=True, eps=0.1,
                       max_iter=10, random_state=0)

    Typical use with a detector ``det`` protecting a torch classifier: tune
    with PGD, then evaluate the chosen detector on held-out rows with a
    different, stronger attack::

        search = GridSearchCV(
            det, {"temperature": [0.5, 1.0]}, scoring=tuning,
            cv=StratifiedKFold(3, shuffle=True, random_state=0),
        ).fit(X_train, y_train)
        held_out = make_attack_scorer(AutoAttack, metric="accuracy_with_rejection", eps=0.1)
        held_out(search.best_estimator_, X_test, y_test)
    """
    is_attack_class = isinstance(attack_cls, type) and issubclass(attack_cls, BaseAttack)
    if not (is_attack_class or isinstance(attack_cls, BaseAttack)):
        raise ValueError(
            "attack_cls must be a skadv attack class (e.g. skadv.attacks.PGD) or an "
            f"instance of one; got {attack_cls!r}."
        )
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}; got {metric!r}.")
    if not (fpr is None or (isinstance(fpr, Real) and 0 <= fpr < 1)):
        raise ValueError(f"fpr must be a number in [0, 1) or None; got {fpr!r}.")
    return _AttackScorer(
        attack_cls, metric, None if fpr is None else float(fpr), bool(successful_only), bool(adaptive), attack_params
    )
