"""Every warning and error class skadv defines.

The classes are also importable where they were first published:
``skadv.InconsistentVersionWarning`` and ``skadv.attacks.AttackFailureWarning``.
"""

__all__ = ["AttackFailureWarning", "InconsistentVersionWarning"]


class InconsistentVersionWarning(UserWarning):
    """Warns that an estimator is loaded with a skadv version other than the one that saved it.

    Examples
    --------
    >>> import warnings
    >>> from skadv.exceptions import InconsistentVersionWarning
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", InconsistentVersionWarning)
    ...     try:
    ...         warnings.warn("saved by skadv 0.0.1", InconsistentVersionWarning)
    ...     except InconsistentVersionWarning as warning:
    ...         print(warning)
    saved by skadv 0.0.1
    """


class AttackFailureWarning(UserWarning):
    """An attack-failure check fired: the reported robustness is likely overstated.

    Raised by :func:`skadv.attacks.check_attack_failure` (and the attacks that run it)
    with the check that fired and what to change.

    Examples
    --------
    >>> from skadv.attacks import AttackFailureWarning as published
    >>> from skadv.exceptions import AttackFailureWarning
    >>> published is AttackFailureWarning
    True
    """
