"""Out-of-fold layer scores: the joblib tasks fitting one layer's classifier per fold.

Kernel machines with a fold fitter (``OneVsAllSVC``, ``NystroemOneVsAll``) fit every
fold of a layer in one pass sharing their kernel work; any other classifier is cloned
and fitted per fold.
"""

import numpy as np
import torch
from joblib import delayed
from sklearn.base import clone


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
    :class:`OneVsAllSVC` goes through :class:`~skadv.rejection._one_vs_all.OneVsAllFits` (the
    folds share one kernel matrix), a :class:`NystroemOneVsAll` through
    :class:`~skadv.rejection._nystroem.NystroemFits` (the folds share its features).
    """

    def __init__(self, template, features, y, n_classes, folds, device):
        self.y, self.n_classes, self.folds = y, n_classes, folds
        if hasattr(template, "_fold_fits"):  # OneVsAllSVC, NystroemOneVsAll
            all_rows = np.arange(len(y))
            self.fits = template._fold_fits(features, y, n_classes, [*folds, (all_rows, None)], device=device)
        else:
            self.fits = None
            self.template, self.features = template, features

    def tasks(self):
        if self.fits is not None:
            yield from self.fits.tasks()
            return
        features = self.features.astype(np.float64)
        for train, test in self.folds:
            yield delayed(_clone_decisions)(self.template, features, self.y, train, test)
        yield delayed(_fit_clone)(self.template, features, self.y)

    def collect(self, results):
        """``(estimator on all rows, [(test, scores)] per fold, whether a fold lacked a class)``."""
        if self.fits is not None:
            *fold_fits, (estimator, _) = self.fits.collect(results)
            raw = [scores for _, scores in fold_fits]
        else:
            raw = [next(results) for _ in self.folds]
            estimator = next(results)
        out, incomplete = [], False
        for (train, test), raw_scores in zip(self.folds, raw):
            present = np.unique(self.y[train])
            incomplete |= len(present) < self.n_classes
            out.append((test, _fold_scores(present, raw_scores, len(test), self.n_classes)))
        return estimator, out, incomplete
