"""Coming from alibi-detect: alibi-shaped results and channels-last images.

alibi-detect's adversarial detectors return nested dictionaries,
``{'meta': {...}, 'data': {'is_adversarial': ..., 'instance_score': ...}}``, from
``predict`` and ``correct``. :func:`alibi_predict` and :func:`alibi_correct` build the
same dictionaries from any fitted skadv detector, so code that reads them keeps working.

TensorFlow stores images channels-last, ``(n, H, W, C)`` (NHWC); skadv's torch models take
channels-first rows, ``(n, C, H, W)`` (NCHW), and ``input_shape`` is the channels-first
shape of one row. :func:`to_channels_first` reorders channels-last images once, before
they reach the detector (e.g. as a ``FunctionTransformer`` step of a Pipeline);
:func:`to_channels_last` reorders results (such as adversarial examples) back.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._version import __version__

__all__ = ["alibi_correct", "alibi_predict", "to_channels_first", "to_channels_last"]


def _as_outlier_detector(detector):
    # DeepNeuralRejection is a classifier with a reject option; its detector view has offset_.
    if hasattr(detector, "as_detector"):
        return detector.as_detector()
    return detector


#: alibi-detect's ``meta['name']`` of the detectors skadv ports; other detectors keep their class name.
ALIBI_NAMES = {"AdversarialAEDetector": "AdversarialAE", "ModelDistillationDetector": "ModelDistillation"}


def _meta(detector):
    """alibi-detect's meta fields (its keys only): name, detector_type, data_type, online, version."""
    name = type(detector).__name__
    return {
        "name": ALIBI_NAMES.get(name, name),
        "detector_type": "adversarial",
        "data_type": getattr(detector, "data_type", None),
        "online": False,
        "version": __version__,
    }


def alibi_predict(detector, X, return_instance_score=True):
    """alibi-detect's ``predict`` output for a fitted skadv detector.

    Parameters
    ----------
    detector : fitted skadv detector
        Any skadv outlier detector (``AdversarialAEDetector``,
        ``ModelDistillationDetector``, ``VAEDetector``, ``DNRDetector``) or a fitted
        ``DeepNeuralRejection`` (its rejected rows are the adversarial ones).
    X : array-like of shape (n_samples, n_features)
    return_instance_score : bool, default=True
        Whether ``data['instance_score']`` holds the scores (else None), as in alibi.

    Returns
    -------
    result : dict
        ``{'meta': {'name', 'detector_type', 'data_type', 'online', 'version'},
        'data': {'is_adversarial', 'instance_score'}}``, alibi-detect's keys.
        ``meta['name']`` is alibi-detect's name for the detectors it has
        (``'AdversarialAE'``, ``'ModelDistillation'``), the class name for the others;
        ``meta['data_type']`` the detector's ``data_type`` parameter (None where it has
        none); ``meta['version']`` skadv's version. ``is_adversarial`` is 1 where the
        detector flags the row (``predict == -1``), 0 elsewhere; ``instance_score`` is
        the adversarial score, higher = more adversarial (``adversarial_score``, or
        ``-score_samples`` for DNR), flagged above ``-offset_`` (the detector's
        ``threshold_``).

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from skadv import ModelDistillationDetector
    >>> from skadv.compat import alibi_predict
    >>> X = np.random.RandomState(0).rand(100, 8).astype("float32")
    >>> model = nn.Sequential(nn.Linear(8, 3))
    >>> det = ModelDistillationDetector(model, epochs=2, data_type="tabular", random_state=0).fit(X)
    >>> out = alibi_predict(det, X[:5])
    >>> sorted(out["data"]), out["meta"]["name"], out["meta"]["data_type"]
    (['instance_score', 'is_adversarial'], 'ModelDistillation', 'tabular')
    """
    detector = _as_outlier_detector(detector)
    check_is_fitted(detector)
    if hasattr(detector, "adversarial_score"):
        score = detector.adversarial_score(X)
    else:
        score = -detector.score_samples(X)
    threshold = -float(detector.offset_)
    # Same comparison as predict's (score_samples >= offset_ is normal), on the negated scale.
    is_adversarial = (score > threshold).astype(int)
    return {
        "meta": _meta(detector),
        "data": {"is_adversarial": is_adversarial, "instance_score": score if return_instance_score else None},
    }


def alibi_correct(detector, X, return_instance_score=True, return_all_predictions=True):
    """alibi-detect's ``AdversarialAE.correct`` output for a skadv detector with ``correct``.

    Parameters
    ----------
    detector : fitted AdversarialAEDetector or VAEDetector
    X : array-like of shape (n_samples, n_features)
    return_instance_score : bool, default=True
    return_all_predictions : bool, default=True
        Whether ``no_defense`` and ``defense`` are filled (else None), as in alibi.

    Returns
    -------
    result : dict
        ``{'meta': {...}, 'data': {'instance_score', 'is_adversarial', 'corrected',
        'no_defense', 'defense'}}`` (``meta`` as in :func:`alibi_predict`), from the
        detector's ``correct(X)``. The predictions are the classifier's labels (alibi
        returns class indices; they coincide for classes ``0..K-1``).
    """
    if not hasattr(detector, "correct"):
        raise ValueError(
            f"{type(detector).__name__} has no correct(); use alibi_predict, or a detector that corrects "
            "(AdversarialAEDetector, VAEDetector)."
        )
    result = detector.correct(X)
    return {
        "meta": _meta(detector),
        "data": {
            "instance_score": result.instance_score if return_instance_score else None,
            "is_adversarial": result.is_adversarial,
            "corrected": result.corrected,
            "no_defense": result.no_defense if return_all_predictions else None,
            "defense": result.defense if return_all_predictions else None,
        },
    }


def _image_rows(X, image_shape, name):
    X = np.asarray(X)
    if X.ndim == 4:
        return X, X.shape[1:]
    if X.ndim != 2 or image_shape is None:
        raise ValueError(
            f"{name} takes 4-D images (n, d1, d2, d3), or 2-D rows with image_shape=(d1, d2, d3); "
            f"got shape {X.shape} and image_shape={image_shape!r}."
        )
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 3 or int(np.prod(image_shape)) != X.shape[1]:
        raise ValueError(
            f"image_shape={image_shape} must have 3 dimensions holding the {X.shape[1]} values of a row."
        )
    return X.reshape((X.shape[0],) + image_shape), image_shape


def to_channels_first(X, image_shape=None):
    """Reorder channels-last images (NHWC, TensorFlow's layout) into skadv's channels-first rows.

    Parameters
    ----------
    X : array-like of shape (n, H, W, C), or (n, H * W * C) rows with ``image_shape``
    image_shape : tuple (H, W, C), default=None
        Channels-last shape of one row of a 2-D ``X``.

    Returns
    -------
    rows : ndarray of shape (n, C * H * W)
        Rows in (C, H, W) order: give skadv ``input_shape=(C, H, W)``. In a Pipeline,
        ``FunctionTransformer(to_channels_first, kw_args={"image_shape": (H, W, C)})``.

    Examples
    --------
    >>> import numpy as np
    >>> from skadv.compat import to_channels_first
    >>> nhwc = np.arange(12).reshape(1, 2, 3, 2)  # one 2x3 image, 2 channels
    >>> to_channels_first(nhwc).reshape(2, 2, 3)[1]  # channel 1
    array([[ 1,  3,  5],
           [ 7,  9, 11]])
    """
    images, _ = _image_rows(X, image_shape, "to_channels_first")
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(images.shape[0], -1)


def to_channels_last(X, image_shape):
    """Reorder skadv's channels-first rows back into channels-last images (inverse of :func:`to_channels_first`).

    Parameters
    ----------
    X : array-like of shape (n, C, H, W), or (n, C * H * W) rows
    image_shape : tuple (C, H, W) or None
        Channels-first shape of one row of a 2-D ``X`` (skadv's ``input_shape``);
        None for a 4-D ``X``.

    Returns
    -------
    images : ndarray of shape (n, H, W, C)
    """
    images, _ = _image_rows(X, image_shape, "to_channels_last")
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1))
