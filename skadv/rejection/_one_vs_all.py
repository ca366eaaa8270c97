"""One-vs-all RBF support vector machines with a shared support-vector set.

:class:`OneVsAllSVC` trains one binary RBF SVC per class (class k against the rest).
Unlike scikit-learn's one-vs-one ``SVC``, every class score is an affine function of
kernel values, so it decays to the intercept far from the training data: the
"compact abating probability" property Deep Neural Rejection relies on. The binary
problems share one precomputed kernel matrix, and the fitted model keeps the union of
their support vectors with a dual-coefficient matrix (one column per class), so a
decision is one kernel matrix and one matrix product.
"""

import numbers

import numpy as np
import torch
from joblib import delayed
from sklearn import config_context
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.svm import SVC

from .._core import Interval, StrOptions
from ._folds import FoldFit, FoldFittingMixin
from ._kernels import (
    _KernelExpansionMixin,
    _rbf_in_place,
    _resolve_gamma,
    _row_moments,
    _shared_tensor,
    squared_distances,
)


def _fit_binary(matrix, target, test_matrix, svc_params, kernel_is_finite=False):
    """One binary SVC: its support, dual coefficients, intercept, iterations and test scores."""
    # A kernel computed here is finite by construction: skip scikit-learn's scan of it.
    with config_context(assume_finite=kernel_is_finite or None):
        svc = SVC(**svc_params).fit(matrix, target)
        test_scores = None if test_matrix is None else svc.decision_function(test_matrix)
    return svc.support_, svc.dual_coef_[0], svc.intercept_[0], svc.n_iter_[0], test_scores


def _rows_float64(X, rows):
    """``X[rows]`` as float64: gathered and cast by torch on all cores (numpy uses one)."""
    tensor = _shared_tensor(np.ascontiguousarray(X))
    if tensor is None:
        return X[rows].astype(np.float64)
    return tensor.index_select(0, torch.from_numpy(np.asarray(rows, dtype=np.int64))).to(torch.float64).numpy()


def _fitted_attributes(X, rows, classes, gamma, parts):
    """A :class:`OneVsAllSVC`'s fitted attributes from the binary problems ``parts`` solved on ``X[rows]``."""
    supports = [p[0] for p in parts]
    support = np.unique(np.concatenate(supports))
    dual_coef = np.zeros((len(support), len(parts)))
    for k, (rows_k, part) in enumerate(zip(supports, parts)):
        dual_coef[np.searchsorted(support, rows_k), k] = part[1]
    return {
        "classes_": np.asarray(classes),
        "gamma_": float(gamma),
        "support_": support,
        "dual_coef_": dual_coef,
        "support_vectors_": _rows_float64(X, rows[support]),
        "intercept_": np.asarray([p[2] for p in parts], dtype=np.float64),
        "n_support_": np.array([len(s) for s in supports]),
        "n_iter_": np.asarray([p[3] for p in parts]),
        "n_features_in_": X.shape[1],
    }


class OneVsAllFits:
    """The binary problems of a :class:`OneVsAllSVC` on several row subsets of one ``X``.

    For every subset ``(train, test)`` (e.g. the folds of a cross-validation, and all
    rows) the one-vs-all problems of ``train`` are fitted and, when ``test`` is given,
    their decision values on ``test`` computed. With a precomputed kernel, the squared
    distances of all rows are computed once (:func:`squared_distances`) and every subset
    takes its train x train and test x train kernels as slices of it, so no kernel
    entry is computed twice and the features are never copied; otherwise each subset's
    rows are handed to libsvm, which computes the RBF kernel itself (with its cache).

    :meth:`tasks` yields the joblib calls (one per subset and class) lazily: a subset's
    kernel exists only while its problems are queued or running, and the distance matrix
    only until the last subset is queued. :meth:`collect` assembles their results.
    :meth:`OneVsAllSVC.fold_fitter` builds it from the estimator's parameters.

    Parameters
    ----------
    X, y, n_classes, subsets
        As in :meth:`FoldFittingMixin.fold_fitter <skadv.rejection.FoldFittingMixin.fold_fitter>`.
    gamma : {'scale', 'auto'} or float
    svc_params : dict
        ``C``, ``tol``, ``max_iter`` and ``cache_size`` of every binary :class:`~sklearn.svm.SVC`.
    precompute : bool
        Whether the kernel is precomputed (shared by the subsets) or left to libsvm.
    gram_dtype : torch.dtype, default=torch.float64
        Precision of the precomputed kernel's squared distances.
    device : str, default='cpu'
        Device of the distance computation.
    """

    def __init__(
        self, X, y, n_classes, subsets, *, gamma, svc_params, precompute, gram_dtype=torch.float64, device="cpu"
    ):
        self.X, self.y, self.n_classes, self.subsets, self.device = X, y, n_classes, subsets, device
        self.svc_params, self.precompute, self.gram_dtype = svc_params, precompute, gram_dtype
        row_sums, row_sq_sums = _row_moments(X)
        self.gammas = [_resolve_gamma(gamma, X.shape[1], row_sums, row_sq_sums, train) for train, _ in subsets]

    def _svc_params(self, gamma):
        return {"kernel": "precomputed" if self.precompute else "rbf", "gamma": gamma, **self.svc_params}

    def _present(self, train):
        """Classes present in ``train`` and the one-vs-all targets to fit (one for two classes)."""
        present = np.unique(self.y[train])
        if len(present) == 2:
            return present, [present[1:]]
        return present, [[k] for k in present] if len(present) > 2 else []

    def tasks(self):
        """Generator of ``delayed(_fit_binary)`` calls, subset by subset, class by class."""
        shared = self.precompute and len(set(self.gammas)) == 1
        if self.precompute:
            distances = squared_distances(self.X, device=self.device, dtype=self.gram_dtype)
            if shared:  # one gamma for every subset: the kernel of all rows, once, in place
                distances = _rbf_in_place(distances, self.gammas[0])
        last = len(self.subsets) - 1
        for index, ((train, test), gamma) in enumerate(zip(self.subsets, self.gammas)):
            _, targets = self._present(train)
            if not targets:
                continue
            if self.precompute:
                all_rows = len(train) == self.X.shape[0] and np.array_equal(train, np.arange(len(train)))
                # The last subset over all rows takes the (distance or kernel) matrix itself.
                matrix = distances if index == last and test is None and all_rows else distances[np.ix_(train, train)]
                test_matrix = None if test is None else distances[np.ix_(test, train)]
                if not shared:
                    matrix = _rbf_in_place(matrix, gamma)
                    test_matrix = None if test is None else _rbf_in_place(test_matrix, gamma)
            else:
                matrix = self.X[train].astype(np.float64)
                test_matrix = None if test is None else self.X[test].astype(np.float64)
            labels = self.y[train]
            for classes in targets:
                yield delayed(_fit_binary)(
                    matrix, np.isin(labels, classes), test_matrix, self._svc_params(gamma), self.precompute
                )
            del matrix, test_matrix
            if index == last:
                distances = None

    def collect(self, results):
        """Consume this object's results from the iterator ``results``.

        Returns
        -------
        fits : list of FoldFit, one per subset
            For a subset with test rows, the decision values on them, shaped
            ``(n_test, n_outputs)``, of the :class:`OneVsAllSVC` fitted on its train rows;
            for a subset without, that estimator's fitted attributes (classes
            ``present``). Both None when the train rows hold fewer than two classes.
        """
        fits = []
        for (train, test), gamma in zip(self.subsets, self.gammas):
            present, targets = self._present(train)
            if not targets:
                fits.append(FoldFit(None, None))
                continue
            parts = [next(results) for _ in targets]
            if test is None:
                fits.append(FoldFit(_fitted_attributes(self.X, train, present, gamma, parts), None))
            else:  # a fold's model only scores its test rows: no copy of its support vectors
                fits.append(FoldFit(None, np.column_stack([p[4] for p in parts])))
        return fits


class OneVsAllSVC(_KernelExpansionMixin, FoldFittingMixin, ClassifierMixin, BaseEstimator):
    """One-vs-all RBF support vector classifier.

    One binary RBF SVC (libsvm, through :class:`sklearn.svm.SVC`) is trained per class,
    class k against all others. The score of class k is
    ``sum_j dual_coef_[j, k] * exp(-gamma_ * ||x - support_vectors_[j]||^2) + intercept_[k]``:
    it falls to ``intercept_[k]`` away from the training data. This is the per-layer and
    combiner classifier of :class:`~skadv.DeepNeuralRejection` and matches
    ``OneVsRestClassifier(SVC(kernel="rbf"))`` while fitting faster (the binary problems
    share one kernel matrix) and predicting faster (one kernel matrix over the union of
    support vectors).

    Parameters
    ----------
    C : float, default=1.0
        Regularisation parameter of every binary SVC.
    gamma : {'scale', 'auto'} or float, default='scale'
        RBF kernel coefficient; 'scale' is ``1 / (n_features * X.var())`` and 'auto'
        ``1 / n_features``, as in :class:`sklearn.svm.SVC`.
    tol : float, default=1e-3
        Stopping tolerance of libsvm.
    max_iter : int, default=-1
        Iteration limit of libsvm per binary problem; -1 means none.
    cache_size : float, default=200
        libsvm's kernel cache in MB (used when the kernel is not precomputed).
    precompute_kernel : bool or 'auto', default='auto'
        Compute the training kernel matrix once (in torch, float64) and share it
        between the binary problems. 'auto' does so when the ``(n_samples, n_samples)``
        float64 matrix fits in ``max_precomputed_mb``; otherwise libsvm computes kernel
        values itself, keeping the most recent in its ``cache_size`` cache.
    gram_dtype : {'float64', 'float32'}, default='float64'
        Precision of the Gram matrix (``x_i . x_j``) behind a precomputed training
        kernel. 'float64' fits the model scikit-learn's ``SVC`` fits (decision values
        equal to ~1e-8). 'float32' computes it about twice as fast and reads float32
        data without a copy; libsvm then solves a kernel that differs by ~1e-7
        relative, so the fitted model differs by about libsvm's own tolerance
        (measured on DNR's 28x28 CNN layers, 2500 rows: class scores within 1.3e-3,
        the same argmax on every test row, the same reject decision on 599 of 600).
    max_precomputed_mb : float, default=1024
        Memory budget of the precomputed kernel matrix for 'auto' (1024 MB holds
        11 585 rows). Under :class:`~skadv.DeepNeuralRejection` the budget holds per
        layer, and the folds' kernels are slices of the layer's matrix.
    n_jobs : int, default=None
        Number of joblib jobs fitting the binary problems (threads by default: libsvm
        releases the GIL, so the jobs share the kernel matrix without copies). None
        means 1 unless in a ``joblib.parallel_config`` context. The fitted model does
        not depend on it.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    support_ : ndarray of shape (n_SV,)
        Training-row indices of the support vectors of any binary problem.
    support_vectors_ : ndarray of shape (n_SV, n_features)
    dual_coef_ : ndarray of shape (n_SV, n_outputs)
        Signed dual coefficients; column k scores class k (``n_outputs`` is 1 for two
        classes, where the single column scores ``classes_[1]``).
    intercept_ : ndarray of shape (n_outputs,)
    n_support_ : ndarray of shape (n_outputs,)
        Number of support vectors of each binary problem.
    gamma_ : float
        The RBF coefficient used.
    n_iter_ : ndarray of shape (n_outputs,)
        libsvm iterations of each binary problem.
    n_features_in_ : int

    See Also
    --------
    sklearn.multiclass.OneVsRestClassifier : the generic one-vs-rest meta-estimator.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from skadv import OneVsAllSVC
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = OneVsAllSVC(C=10).fit(X, y)
    >>> clf.decision_function(X[:2]).shape
    (2, 3)
    >>> float(clf.score(X, y)) > 0.95
    True
    """

    _parameter_constraints = {
        "C": [Interval(numbers.Real, 0, None, closed="neither")],
        "gamma": [StrOptions({"scale", "auto"}), Interval(numbers.Real, 0, None, closed="neither")],
        "tol": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_iter": [Interval(numbers.Integral, -1, None, closed="left")],
        "cache_size": [Interval(numbers.Real, 0, None, closed="neither")],
        "precompute_kernel": ["boolean", StrOptions({"auto"})],
        "gram_dtype": [StrOptions({"float64", "float32"})],
        "max_precomputed_mb": [Interval(numbers.Real, 0, None, closed="left")],
        "n_jobs": [numbers.Integral, None],
    }

    def __init__(
        self,
        C=1.0,
        *,
        gamma="scale",
        tol=1e-3,
        max_iter=-1,
        cache_size=200,
        precompute_kernel="auto",
        gram_dtype="float64",
        max_precomputed_mb=1024,
        n_jobs=None,
    ):
        self.C = C
        self.gamma = gamma
        self.tol = tol
        self.max_iter = max_iter
        self.cache_size = cache_size
        self.precompute_kernel = precompute_kernel
        self.gram_dtype = gram_dtype
        self.max_precomputed_mb = max_precomputed_mb
        self.n_jobs = n_jobs

    def fold_fitter(self, X, y, n_classes, subsets, *, device="cpu"):
        """The fitter of this estimator's parameters on several row subsets of ``X``.

        The subsets share one kernel matrix (see :class:`~skadv.rejection.FoldFittingMixin`).

        Parameters
        ----------
        X, y, n_classes, subsets, device
            As in :meth:`FoldFittingMixin.fold_fitter <skadv.rejection.FoldFittingMixin.fold_fitter>`.

        Returns
        -------
        fitter : OneVsAllFits
        """
        svc_params = {"C": self.C, "tol": self.tol, "max_iter": self.max_iter, "cache_size": self.cache_size}
        return OneVsAllFits(
            X, y, n_classes, subsets, gamma=self.gamma, svc_params=svc_params,
            precompute=self._precomputes(X.shape[0]), gram_dtype=getattr(torch, self.gram_dtype), device=device,
        )

    def _precomputes(self, n_samples):
        """Whether the kernel matrix of ``n_samples`` training rows is precomputed."""
        if self.precompute_kernel == "auto":
            return 8.0 * n_samples * n_samples <= self.max_precomputed_mb * 2**20
        return bool(self.precompute_kernel)
