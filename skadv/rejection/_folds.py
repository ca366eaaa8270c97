"""Fitting on folds: the fold-fitting interface and the joblib tasks of one layer's out-of-fold scores.

:class:`FoldFittingMixin` is the documented interface of classifiers that fit several
row subsets of one ``X`` in one pass, sharing work between them (``OneVsAllSVC`` and
``NystroemOneVsAll`` share their kernel work); their fold fitter returns plain
:class:`FoldFit` results and the estimator sets its own fitted attributes from one.
:class:`DeepNeuralRejection` fits every fold of a layer through it when the layer's
classifier implements it; any other classifier is cloned and fitted per fold.
"""

from abc import ABCMeta, abstractmethod
from typing import NamedTuple

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from .._core import fit_context, is_fitted_attribute


class FoldFit(NamedTuple):
    """The plain result of fitting one ``(train, test)`` row subset with a fold fitter.

    Attributes
    ----------
    attributes : dict of str to object, or None
        For a subset without test rows: the fitted attributes (names ending in ``_``)
        of the estimator fitted on its train rows, with ``classes_`` the encoded labels
        present there. None for a subset with test rows (its model only scores them, so
        its support vectors are never copied out), and when the train rows hold a
        single class (nothing to fit).
    test_scores : ndarray of shape (n_test, n_outputs), or None
        For a subset with test rows: the decision values on them of the estimator
        fitted on its train rows; None when the subset has no test rows, or nothing
        was fitted.
    """

    attributes: dict | None
    test_scores: np.ndarray | None


class FoldFittingMixin(metaclass=ABCMeta):
    """Interface of classifiers fitting several row subsets of one ``X`` in one pass.

    A subclass implements :meth:`fold_fitter`. It gets :meth:`fit` (fit on all rows
    through its own fold fitter) and :meth:`fit_from_fold`.
    :class:`~skadv.DeepNeuralRejection` fits the out-of-fold scores of a layer (every
    fold, and the layer on all rows) through :meth:`fold_fitter` when the layer's
    classifier is an instance of this class, so the folds can share work (one kernel
    matrix for all of them); any other classifier is cloned and fitted per fold.

    The fold fitter returned by :meth:`fold_fitter` has two methods:

    * ``tasks()``: an iterable of ``joblib.delayed`` calls (run them in order, e.g. with
      ``joblib.Parallel``; they may be generated lazily to bound memory);
    * ``collect(results)``: consumes this fitter's results, in the order of its tasks,
      from the iterator ``results`` and returns one :class:`FoldFit` per subset.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.base import clone
    >>> from sklearn.datasets import load_iris
    >>> from skadv import OneVsAllSVC
    >>> from skadv.rejection import FoldFittingMixin
    >>> X, y = load_iris(return_X_y=True)
    >>> svc = OneVsAllSVC(C=10)
    >>> isinstance(svc, FoldFittingMixin)
    True
    >>> rows = np.arange(len(X))
    >>> fitter = svc.fold_fitter(X, y, 3, [(rows[::2], rows[1::2]), (rows, None)])
    >>> fold, on_all = fitter.collect(iter([call(*a, **k) for call, a, k in fitter.tasks()]))
    >>> fold.test_scores.shape
    (75, 3)
    >>> fold.attributes is None  # a fold's model only scores its test rows
    True
    >>> bool(clone(svc).fit_from_fold(on_all).score(X, y) == svc.fit(X, y).score(X, y))
    True
    """

    @abstractmethod
    def fold_fitter(self, X, y, n_classes, subsets, *, device="cpu"):
        """The fitter of this (unfitted) estimator's parameters on several row subsets of ``X``.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), float32 or float64
        y : ndarray of shape (n_samples,) of int
            Encoded labels in ``range(n_classes)``.
        n_classes : int
        subsets : list of (train, test) index arrays; test may be None
            Subsets with a test part come first; a last subset without one may be all
            rows (and may then reuse the memory of shared work).
        device : str, default='cpu'
            Device of the shared torch computations.

        Returns
        -------
        fitter : object
            With ``tasks()`` and ``collect(results)`` (see the class description).
        """

    def fit_from_fold(self, fold_fit):
        """Set this estimator's fitted attributes to those of one subset's fit.

        Parameters
        ----------
        fold_fit : FoldFit
            A result of this estimator's :meth:`fold_fitter` (of its parameters), with
            fitted attributes.

        Returns
        -------
        self : object
            Fitted as on that subset's train rows (its ``classes_`` are the encoded labels).
        """
        if fold_fit.attributes is None:
            raise ValueError(
                "This FoldFit holds no fitted attributes: its train rows had a single class. "
                "Fit on rows of at least two classes."
            )
        names = [name for name in fold_fit.attributes if not is_fitted_attribute(name)]
        if names:
            raise ValueError(f"FoldFit attributes must be fitted attributes (ending in '_'); got {names}.")
        for name, value in fold_fit.attributes.items():
            setattr(self, name, value)
        return self

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the one-vs-all classifiers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).

        Returns
        -------
        self : object
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], order="C")
        check_classification_targets(y)
        classes, y_encoded = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the data, but the "
                f"data contains only 1 class: {classes[0]!r}."
            )
        fitter = self.fold_fitter(X, y_encoded, len(classes), [(np.arange(X.shape[0]), None)])
        results = Parallel(n_jobs=getattr(self, "n_jobs", None), prefer="threads")(fitter.tasks())
        (fold_fit,) = fitter.collect(iter(results))
        self.fit_from_fold(fold_fit)
        self.classes_ = classes
        return self


def _per_class(scores, n_classes):
    """Decision values as ``(n, n_classes)``: a binary 1-column score ``d`` becomes ``[-d, d]``."""
    if scores.ndim == 1 or scores.shape[1] == 1:
        scores = scores.reshape(-1, 1)
        if n_classes == 2:
            return torch.cat([-scores, scores], 1) if torch.is_tensor(scores) else np.hstack([-scores, scores])
    return scores


def _fold_scores(present, raw_scores, n_test, n_classes):
    """Per-class scores ``(n_test, n_classes)`` of a fold whose classifier knows ``present``.

    A class absent from the training fold scores -1 (beyond the negative margin); a fold
    with a single class (no classifier, ``raw_scores`` None) scores +1 for it.
    """
    scores = np.full((n_test, n_classes), -1.0)
    if raw_scores is None:
        scores[:, present] = 1.0
    else:
        scores[:, present] = _per_class(np.asarray(raw_scores, dtype=np.float64), len(present))
    return scores


def _fit_clone(estimator, features, y):
    return clone(estimator).fit(features, y)


def _clone_decisions(estimator, features, y, train, test):
    """Decision values of ``features[test]`` by a clone fitted on ``features[train]`` (None: one class)."""
    if len(np.unique(y[train])) < 2:
        return None
    return clone(estimator).fit(features[train], y[train]).decision_function(features[test])


class _LayerFolds:
    """Joblib tasks fitting one layer's classifier on every fold and on all rows.

    The generic version fits clones of any classifier (on float64 features); a
    :class:`FoldFittingMixin` (``OneVsAllSVC``: the folds share one kernel matrix;
    ``NystroemOneVsAll``: they share its features) goes through its :meth:`~FoldFittingMixin.fold_fitter`.
    """

    def __init__(self, template, features, y, n_classes, folds, device):
        self.y, self.n_classes, self.folds, self.template = y, n_classes, folds, template
        if isinstance(template, FoldFittingMixin):
            all_rows = np.arange(len(y))
            self.fitter = template.fold_fitter(features, y, n_classes, [*folds, (all_rows, None)], device=device)
        else:
            self.fitter = None
            self.features = features

    def tasks(self):
        if self.fitter is not None:
            yield from self.fitter.tasks()
            return
        features = self.features.astype(np.float64)
        for train, test in self.folds:
            yield delayed(_clone_decisions)(self.template, features, self.y, train, test)
        yield delayed(_fit_clone)(self.template, features, self.y)

    def collect(self, results):
        """``(estimator on all rows, [(test, scores)] per fold, whether a fold lacked a class)``."""
        if self.fitter is not None:
            *fold_fits, on_all_rows = self.fitter.collect(results)
            estimator = clone(self.template).fit_from_fold(on_all_rows)
            raw = [fold_fit.test_scores for fold_fit in fold_fits]
        else:
            raw = [next(results) for _ in self.folds]
            estimator = next(results)
        out, incomplete = [], False
        for (train, test), raw_scores in zip(self.folds, raw):
            present = np.unique(self.y[train])
            incomplete |= len(present) < self.n_classes
            out.append((test, _fold_scores(present, raw_scores, len(test), self.n_classes)))
        return estimator, out, incomplete
