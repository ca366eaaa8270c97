"""Every scikit-learn private import of skadv, in one place, under public names.

scikit-learn does not promise these names across versions (setup.cfg caps it at the
next major version); a rename upstream is fixed here, once. No other skadv module
imports from a private scikit-learn module or a private scikit-learn name (a test
checks it).
"""

import inspect

from sklearn.base import _fit_context as fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    Options,
    StrOptions,
    validate_parameter_constraints,
    validate_params,
)
from sklearn.utils.metaestimators import _BaseComposition as BaseComposition
from sklearn.utils.validation import _check_y as check_y

__all__ = [
    "WRAPPER_FILES",
    "BaseComposition",
    "HasMethods",
    "Interval",
    "Options",
    "StrOptions",
    "check_y",
    "fit_context",
    "svc_gamma",
    "validate_parameter_constraints",
    "validate_params",
]


#: The files of the wrappers scikit-learn puts between a user's call and skadv's code
#: (``_fit_context`` around ``fit``, ``validate_params`` around public functions).
WRAPPER_FILES = tuple(inspect.getfile(f) for f in (fit_context, validate_params))


def svc_gamma(svc):
    """The ``gamma`` a fitted :class:`sklearn.svm.SVC` used (``"scale"``/``"auto"`` resolved)."""
    return svc._gamma
