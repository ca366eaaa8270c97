"""Whether inputs lie in the attacks' box: one rule for the attacks and for evaluation."""

import numpy as np

# Inputs and boxes are compared as float32 values: a bound may be off by its float32 rounding.
RANGE_RTOL = 4 * float(np.finfo(np.float32).eps)


def values_outside(X, low, high):
    """The observed range of ``X`` as text when a value lies outside ``[low, high]``, else None.

    ``low`` and ``high`` are scalars or arrays broadcasting against ``X``. A value counts
    as inside when it is within float32 rounding of the box (``RANGE_RTOL`` times the
    box's largest magnitude, at least 1); NaN and infinity are always outside and named.
    """
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    tol = RANGE_RTOL * max(float(np.max(np.abs(low))), float(np.max(np.abs(high))), 1.0)
    X = np.asarray(X)
    with np.errstate(invalid="ignore"):
        inside = (X >= low - tol) & (X <= high + tol)
    if inside.all():
        return None
    finite = X[np.isfinite(X)]
    observed = f"[{finite.min():.4g}, {finite.max():.4g}]" if finite.size else "no finite values"
    if finite.size < X.size:
        observed += " and non-finite values (NaN or infinity)"
    return observed
