"""The outlier-detector view of Deep Neural Rejection."""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._core import HasMethods, Interval, fit_context
from ..base import OffsetOutlierMixin, check_threshold_options, check_threshold_perc, fit_atomically, holdout_split
from ._dnr import DeepNeuralRejection, _accepting_score


class DNRDetector(OffsetOutlierMixin, BaseEstimator):
    """Outlier-detector view of :class:`DeepNeuralRejection`: accepted +1, rejected -1.

    ``score_samples`` is the DNR's highest class score (higher = more normal),
    ``decision_function`` that score minus ``offset_``, and ``predict`` -1 for rejected
    rows, so the detector slots into detection metrics and pipelines.

    Parameters
    ----------
    estimator : DeepNeuralRejection or FrozenEstimator of a fitted one
        An unfitted DNR is fitted in :meth:`fit`: on ``(X, y)``, or, without ``y``, on
        the network's own predictions for ``X`` as labels. A fitted one wrapped in
        :class:`sklearn.frozen.FrozenEstimator` is used as is (never modified);
        :meth:`DeepNeuralRejection.as_detector` builds that. Scoring runs in the DNR's
        batches (its ``inference_batch_size``).
    contamination : float in (0, 0.5], default=0.05
        Used only when the DNR has no ``threshold`` (None): ``fit`` then sets
        ``offset_`` to flag this share of the training rows (of the held-out rows with
        ``validation_fraction``), as the other detectors' ``contamination`` does. A DNR
        ``threshold`` overrides it, as a detector's ``threshold`` overrides its
        ``contamination``.
    validation_fraction : float in (0, 1), default=None
        Share of the rows given to ``fit`` held out from the DNR's training to set
        ``offset_``: the DNR is fitted on the other rows, and ``offset_`` flags the
        ``contamination`` share of the held-out rows, exactly as :meth:`infer_threshold`
        with ``threshold_perc=100 * (1 - contamination)`` on them would. The held-out
        rows are the test rows of ``sklearn.model_selection.train_test_split(X,
        test_size=validation_fraction, random_state=random_state)`` with the wrapped
        DNR's ``random_state``. None fits on all rows. Needs an unfitted DNR without
        ``threshold``.

    Attributes
    ----------
    estimator_ : DeepNeuralRejection or FrozenEstimator
    offset_ : float
        Rows whose score is strictly below it are flagged: the DNR's threshold, else the
        ``contamination`` percentile of the training scores (``-inf``, nothing flagged,
        for a frozen DNR without threshold fitted on ``X=None``); or the value
        :meth:`infer_threshold` set.
    threshold_ : float
        Equal to ``offset_`` (DNR's threshold is on the class score; the other
        detectors' ``threshold_`` is on the adversarial score, ``-offset_``).
    n_features_in_ : int

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn.datasets import load_digits
    >>> from skadv import DeepNeuralRejection, DNRDetector
    >>> X, y = load_digits(return_X_y=True)
    >>> _ = torch.manual_seed(0)  # an untrained network: its predictions must cover 2+ classes
    >>> net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    >>> det = DNRDetector(DeepNeuralRejection(net, layers=["1"], random_state=0))
    >>> det = det.fit(X[:300] / 16)  # labels: the network's own predictions
    >>> det = det.infer_threshold(X[300:400] / 16, threshold_perc=90)
    >>> int((det.predict(X[300:400] / 16) == -1).sum())
    10
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit", "score_samples"])],
        "contamination": [Interval(numbers.Real, 0, 0.5, closed="right")],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither"), None],
    }

    def __init__(self, estimator=None, *, contamination=0.05, validation_fraction=None):
        self.estimator = estimator
        self.contamination = contamination
        self.validation_fraction = validation_fraction

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("validation_fraction", None)  # saved before the parameter existed

    def _validate_params(self):
        estimator = self.estimator
        if not (hasattr(estimator, "fit") and hasattr(estimator, "score_samples")):
            what = "a bare network" if isinstance(estimator, nn.Module) or hasattr(estimator, "module") else (
                type(estimator).__name__
            )
            raise ValueError(
                f"DNRDetector wraps a DeepNeuralRejection, not {what}: wrap the network first, "
                "DNRDetector(DeepNeuralRejection(net, layers=...)), or pass a fitted DNR's "
                "dnr.as_detector()."
            )
        super()._validate_params()

    @fit_context(prefer_skip_nested_validation=False)
    @fit_atomically
    def fit(self, X, y=None):
        """Fit the wrapped DNR, or adopt a frozen fitted one (``X``, ``y`` ignored).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or None
        y : array-like of shape (n_samples,), default=None
            Class labels. None fits a :class:`DeepNeuralRejection` on the network's own
            predictions for ``X`` (the clean data a detector learns from).

        Returns
        -------
        self : object
        """
        estimator = clone(self.estimator)
        X_threshold = X
        if self.validation_fraction is not None:
            if isinstance(estimator, FrozenEstimator) or getattr(estimator, "threshold", None) is not None:
                raise ValueError(
                    f"validation_fraction={self.validation_fraction} holds rows out of the DNR's training to "
                    "set offset_; it needs an unfitted DeepNeuralRejection without threshold. For a fitted "
                    "(frozen) DNR, call infer_threshold on held-out rows instead."
                )
            X = X if hasattr(X, "shape") else np.asarray(X)
            train, held_out = holdout_split(
                X.shape[0], self.validation_fraction, getattr(estimator, "random_state", None)
            )
            X, X_threshold = X[train], X[held_out]
            y = None if y is None else np.asarray(y)[train]
        if isinstance(estimator, FrozenEstimator) or y is not None:
            estimator.fit(X, y)
        elif isinstance(estimator, DeepNeuralRejection):
            estimator.fit_on_model_labels(X)
        else:
            raise ValueError(
                f"DNRDetector cannot fit {type(estimator).__name__} without class labels y: pass y, or wrap "
                "a fitted one in sklearn.frozen.FrozenEstimator (DeepNeuralRejection.as_detector())."
            )
        self.estimator_ = estimator
        rejector = self._rejector()
        self.n_features_in_ = rejector.n_features_in_
        if rejector.threshold is None and X_threshold is not None:
            self.offset_ = _accepting_score(self.score_samples(X_threshold), 100.0 * (1.0 - self.contamination))
        else:
            self.offset_ = rejector.threshold_
        return self

    def _rejector(self):
        estimator = self.estimator_
        return estimator.estimator if isinstance(estimator, FrozenEstimator) else estimator

    @property
    def threshold_(self):
        """Equal to ``offset_``: flagged rows score strictly below it."""
        check_is_fitted(self)
        return self.offset_

    def infer_threshold(self, X, threshold_perc=95, margin=0.0, batch_size=None):
        """Set ``offset_`` so that ``threshold_perc`` percent of clean ``X`` is accepted.

        The detectors' call: ``offset_`` becomes the ``100 - threshold_perc`` percentile
        of :meth:`score_samples` on ``X``, minus ``margin``. The wrapped DNR is not
        modified.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Clean data, ideally held out from training.
        threshold_perc : float in [0, 100], default=95
            Share of ``X`` to accept, in percent. A value in (0, 1] warns.
        margin : float, default=0.0
            Moves the threshold toward accepting more rows, as the detectors' ``margin``
            (alibi-detect's) does on the adversarial score: ``offset_`` is lowered by it.
        batch_size : int, default=None
            alibi-detect's scoring batch, accepted for its call; it changes no result.

        Returns
        -------
        self : object
        """
        check_threshold_perc(threshold_perc)
        margin = check_threshold_options(margin, batch_size)
        self.offset_ = _accepting_score(self.score_samples(X), threshold_perc) - margin
        return self

    def score_samples(self, X):
        """The DNR's highest class score of each row (higher = more normal).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,), float64
        """
        check_is_fitted(self)
        return self._rejector().score_samples(X)

    def attack_surface(self):
        """The wrapped DNR's attack surface (see :meth:`DeepNeuralRejection.attack_surface`) at ``offset_``.

        Returns
        -------
        surface : skadv.utils.AttackSurface
        """
        check_is_fitted(self)
        return self._rejector().attack_surface(threshold=self.offset_)
