"""Warnings that point at the user's line, however deep inside skadv they are raised."""

import inspect
import os
import warnings

from ._sklearn import WRAPPER_FILES

# Frames in these files are not the user's: skadv's own package, and scikit-learn's wrappers
# around skadv's methods and functions.
_INTERNAL_FILES = (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
    *(os.path.abspath(f) for f in WRAPPER_FILES),
)


def warn_at_caller(message, category=UserWarning):
    """Issue ``message`` attributed to the first calling frame outside skadv.

    A fixed ``stacklevel`` points at the user's line only for one call depth; skadv's
    warnings are raised from helpers reached through several paths (``fit`` directly,
    ``fit_predict``, another estimator's ``fit``, a display), so the level is found by
    walking the stack. Filters on the user's module then apply, and a warning never
    appears to come from skadv itself.
    """
    # stacklevel 1 is this function, 2 its caller, and so on outwards.
    frame, level = inspect.currentframe().f_back, 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_INTERNAL_FILES):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
