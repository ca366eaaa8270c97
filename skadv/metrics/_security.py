"""Security evaluation curves and an attack-based scorer for model selection."""

import warnings
from numbers import Real

import numpy as np
from sklearn.base import is_classifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import Bunch

from ..attacks._base import BaseAttack, _is_skadv_estimator, _resolve_target
from ._detection import accuracy_with_rejection, detection_auroc, tpr_at_fpr
from ._scores import adversarial_scores

__all__ = ["make_attack_scorer", "security_evaluation"]


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


def _classifier_labels(estimator, X, batch_size=256, input_shape=None):
    """Labels the protected classifier (no defense) assigns to ``X``."""
    target = _resolve_target(estimator, X, adaptive=False, device=None, input_shape=input_shape)
    scores, _ = target.class_scores(X, batch_size)
    return target.indices_to_labels(scores.argmax(axis=1))


def security_evaluation(estimator, attack_cls, X, y, eps_values, *, adaptive=True, **attack_params):
    """Accuracy and detection under attack as a function of the attack budget.

    For each ``eps`` the inputs are attacked with
    ``attack_cls(estimator, eps=eps, adaptive=adaptive, **attack_params)``
    (``eps == 0`` means the clean inputs) and the protected classifier and
    the detector are measured on the result. Against a skadv estimator the
    attack is adaptive by default: it targets classifier and detector
    together, which is the honest evaluation (non-adaptive attacks overstate
    every detector). Fix the detector's threshold on clean data beforehand.

    Parameters
    ----------
    estimator : fitted skadv estimator, torch.nn.Module or fitted skorch net
        What to evaluate. For a plain model only ``accuracy`` is measured. A
        :class:`~sklearn.pipeline.Pipeline` ending in a skadv estimator is
        accepted when its earlier steps leave X unchanged (see
        :func:`make_attack_scorer`).
    attack_cls : skadv attack class or instance
        E.g. :class:`skadv.attacks.PGD`. An instance serves as a template of
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
          (the attacker's success against the defended system);

        and ``adaptive`` (bool, whether the attack saw the detector) and
        ``attack`` (the attack's class name).

    See Also
    --------
    skadv.plotting.SecurityEvaluationDisplay : Plot of the result.

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
    is_detector = _is_skadv_estimator(estimator)

    keys = ["accuracy", "detection_rate", "accuracy_with_rejection", "evasion_rate"]
    curves = {key: np.full(eps_values.size, np.nan) for key in keys}
    for i, eps in enumerate(eps_values):
        if eps == 0:
            X_eval = X
        else:
            attack = _make_attack(attack_cls, estimator, eps=float(eps), adaptive=adaptive, **attack_params)
            X_eval = attack.generate(X, y)
        labels = _classifier_labels(estimator, X_eval, input_shape=attack_params.get("input_shape"))
        wrong = labels != y
        curves["accuracy"][i] = 1.0 - wrong.mean()
        flagged = np.zeros_like(wrong)
        if is_detector:
            prediction = np.asarray(estimator.predict(X_eval))
            flagged = prediction == -1
            curves["detection_rate"][i] = flagged.mean()
            if is_classifier(estimator):
                # A classifier with reject option (DNR) labels the rows it accepts itself.
                labels, wrong = prediction, prediction != y
        curves["accuracy_with_rejection"][i] = accuracy_with_rejection(
            y, labels, rejected=flagged, attacked=bool(eps > 0)
        )
        curves["evasion_rate"][i] = (wrong & ~flagged).mean()

    attack_name = attack_cls.__name__ if isinstance(attack_cls, type) else type(attack_cls).__name__
    return Bunch(
        eps_values=eps_values,
        **curves,
        adaptive=bool(adaptive and is_detector),
        attack=attack_name,
    )


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
        if not _is_skadv_estimator(estimator):
            raise ValueError(
                "make_attack_scorer scores skadv detectors (alone or as the last step of a "
                f"Pipeline); got {type(estimator).__name__}, which exposes no adversarial score."
            )
        attack = _make_attack(self.attack, estimator, adaptive=self.adaptive, **self.attack_params)
        X_attacked = attack.generate(X, y)
        scores_clean = adversarial_scores(estimator, X)
        scores_attacked = adversarial_scores(estimator, X_attacked)
        if self.successful_only:
            # Positives are only the attacked inputs that fool the classifier.
            reference = _classifier_labels(estimator, X) if y is None else np.asarray(y)
            fooled = _classifier_labels(estimator, X_attacked) != reference
            if not fooled.any():
                warnings.warn(
                    "The attack fooled the classifier on no input of this fold; "
                    "the detection score is undefined (NaN).",
                    UserWarning,
                )
                return np.nan
            scores_attacked = scores_attacked[fooled]
        if self.metric == "auroc":
            return detection_auroc(scores_clean, scores_attacked)
        return tpr_at_fpr(scores_clean, scores_attacked, fpr=self.fpr)

    def __repr__(self):
        name = self.attack.__name__ if isinstance(self.attack, type) else type(self.attack).__name__
        params = ", ".join(f"{k}={v!r}" for k, v in self.attack_params.items())
        return (
            f"make_attack_scorer({name}, metric={self.metric!r}, "
            f"successful_only={self.successful_only}, adaptive={self.adaptive}"
            + (f", {params})" if params else ")")
        )


def make_attack_scorer(
    attack_cls, *, metric="auroc", fpr=0.05, successful_only=False, adaptive=True, **attack_params
):
    """Scorer that attacks each evaluated fold and measures detection.

    The returned callable ``scorer(detector, X, y=None)`` attacks ``X`` with
    ``attack_cls(detector, **attack_params)`` and scores how well the
    detector's adversarial score separates the attacked inputs from the
    clean ones. Used as ``scoring=`` of :class:`~sklearn.model_selection.GridSearchCV`
    it tunes a detector fitted on clean data alone: detectors ignore ``y``
    in ``fit``, and the scorer uses ``y`` (when given) as the true labels to
    attack.

    ``detector`` may also be a :class:`~sklearn.pipeline.Pipeline` whose last
    step is a skadv detector, provided every earlier step leaves X unchanged
    (``'passthrough'``, None or ``FunctionTransformer()`` without ``func``):
    the final detector is then attacked on the Pipeline's input. Any other
    step raises a ValueError, because scikit-learn transformers compute
    outside torch and no gradient passes through them; do such
    preprocessing in torch (in the protected model or the detector's
    ``preprocess_fn``).

    Parameters
    ----------
    attack_cls : skadv attack class or instance
        E.g. :class:`skadv.attacks.PGD`; an instance serves as a template.
    metric : {"auroc", "tpr_at_fpr"}, default="auroc"
        :func:`detection_auroc`, or :func:`tpr_at_fpr` at ``fpr``.
    fpr : float in [0, 1], default=0.05
        False-positive rate for ``metric="tpr_at_fpr"``.
    successful_only : bool, default=False
        Count as positives only the attacked inputs that fool the classifier
        (all attacked inputs otherwise).
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
    >>> from sklearn.model_selection import GridSearchCV, StratifiedKFold
    >>> from skadv.attacks import PGD
    >>> from skadv.metrics import make_attack_scorer
    >>> scorer = make_attack_scorer(PGD, eps=0.1, max_iter=10, random_state=0)
    >>> scorer
    make_attack_scorer(PGD, metric='auroc', successful_only=False, adaptive=True, eps=0.1, max_iter=10, random_state=0)

    Typical use with a detector ``det`` protecting a torch classifier::

        search = GridSearchCV(
            det, {"temperature": [0.5, 1.0]}, scoring=scorer,
            cv=StratifiedKFold(3, shuffle=True, random_state=0),
        ).fit(X, y)
    """
    is_attack_class = isinstance(attack_cls, type) and issubclass(attack_cls, BaseAttack)
    if not (is_attack_class or isinstance(attack_cls, BaseAttack)):
        raise ValueError(
            "attack_cls must be a skadv attack class (e.g. skadv.attacks.PGD) or an "
            f"instance of one; got {attack_cls!r}."
        )
    if metric not in ("auroc", "tpr_at_fpr"):
        raise ValueError(f"metric must be 'auroc' or 'tpr_at_fpr'; got {metric!r}.")
    if not (isinstance(fpr, Real) and 0 <= fpr <= 1):
        raise ValueError(f"fpr must be a number in [0, 1]; got {fpr!r}.")
    return _AttackScorer(attack_cls, metric, float(fpr), bool(successful_only), bool(adaptive), attack_params)
