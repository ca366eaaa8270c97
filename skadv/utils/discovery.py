"""Discovery of skadv's public estimators, as :mod:`sklearn.utils.discovery` does for scikit-learn's."""

import importlib
import inspect
import pkgutil

from sklearn.base import BaseEstimator, ClassifierMixin, OutlierMixin, RegressorMixin, TransformerMixin

__all__ = ["all_estimators"]

# The estimator families a type_filter can name, each a test on the class.
_TYPE_TESTS = {
    "classifier": lambda cls: issubclass(cls, ClassifierMixin),
    "regressor": lambda cls: issubclass(cls, RegressorMixin),
    "detector": lambda cls: issubclass(cls, OutlierMixin),
    "transformer": lambda cls: issubclass(cls, TransformerMixin) or hasattr(cls, "transform"),
    "attack": lambda cls: hasattr(cls, "generate"),
}


def _public_modules():
    """skadv and every public module below it (no part of the dotted name starts with ``_``)."""
    import skadv

    yield skadv
    for info in pkgutil.walk_packages(skadv.__path__, prefix="skadv."):
        if not any(part.startswith("_") for part in info.name.split(".")) and info.name != "skadv.utils.discovery":
            yield importlib.import_module(info.name)


def all_estimators(type_filter=None):
    """Every public estimator class of skadv, as ``(name, class)`` pairs sorted by name.

    A class counts when a public module of skadv exports it (in its ``__all__``), it is
    defined by skadv, derives from :class:`sklearn.base.BaseEstimator`, is not abstract
    and its name does not start with ``Base`` (the bases to subclass, such as
    :class:`skadv.base.BaseDetector`).

    Parameters
    ----------
    type_filter : {'classifier', 'regressor', 'detector', 'transformer', 'attack'} or list of those, default=None
        Keep only these families: classifiers (:class:`~sklearn.base.ClassifierMixin`,
        e.g. :class:`~skadv.DeepNeuralRejection`), regressors, detectors (outlier
        detectors, :class:`~sklearn.base.OutlierMixin`: flagged rows are -1),
        transformers (with ``transform``) or attacks (with ``generate``). A list keeps
        the union. None keeps every estimator.

    Returns
    -------
    estimators : list of (str, type)
        The class names and classes, sorted by name.

    Raises
    ------
    ValueError
        When ``type_filter`` names an unknown family.

    See Also
    --------
    sklearn.utils.discovery.all_estimators : scikit-learn's estimators.
    skadv.utils.estimator_checks.check_detector : skadv's contract checks on one estimator.

    Examples
    --------
    >>> from skadv.utils.discovery import all_estimators
    >>> detectors = all_estimators(type_filter="detector")
    >>> [name for name, _ in detectors][:3]
    ['AdversarialAEDetector', 'ConfidenceDetector', 'DNRDetector']
    >>> ("OneVsAllSVC" in dict(all_estimators("classifier")), "PGD" in dict(all_estimators("attack")))
    (True, True)
    """
    if type_filter is not None:
        families = [type_filter] if isinstance(type_filter, str) else list(type_filter)
        unknown = [family for family in families if family not in _TYPE_TESTS]
        if unknown:
            raise ValueError(
                f"type_filter must be None or among {sorted(_TYPE_TESTS)} (or a list of those); got {unknown}."
            )
    found = {}
    for module in _public_modules():
        for name in getattr(module, "__all__", ()):
            cls = getattr(module, name, None)
            if (
                inspect.isclass(cls)
                and issubclass(cls, BaseEstimator)
                and cls.__module__.partition(".")[0] == "skadv"
                and not inspect.isabstract(cls)
                and not cls.__name__.startswith(("Base", "_"))
            ):
                found[cls.__name__] = cls
    estimators = sorted(found.items())
    if type_filter is None:
        return estimators
    return [(name, cls) for name, cls in estimators if any(_TYPE_TESTS[family](cls) for family in families)]
