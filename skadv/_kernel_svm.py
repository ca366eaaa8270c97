"""One-vs-all RBF support vector machines with a shared support-vector set.

:class:`OneVsAllSVC` trains one binary RBF SVC per class (class k against the rest).
Unlike scikit-learn's one-vs-one ``SVC``, every class score is an affine function of
kernel values, so it decays to the intercept far from the training data: the
"compact abating probability" property Deep Neural Rejection relies on. The binary
problems share one precomputed kernel matrix, and the fitted model keeps the union of
their support vectors with a dual-coefficient matrix (one column per class), so a
decision is one kernel matrix and one matrix product.

:class:`RBFKernelMachine` evaluates such a model (or scikit-learn's RBF ``SVC`` and
``OneVsRestClassifier(SVC)``) as a differentiable torch computation.
"""

import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import SVC
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

# Largest training set whose kernel matrix is precomputed by default (float64: 200 MB).
_MAX_PRECOMPUTED_ROWS = 5000


class OneVsAllSVC(ClassifierMixin, BaseEstimator):
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
        Compute the training kernel matrix once and share it between the binary
        problems. 'auto' does so up to 5000 training rows.

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
    }

    def __init__(self, C=1.0, *, gamma="scale", tol=1e-3, max_iter=-1, cache_size=200, precompute_kernel="auto"):
        self.C = C
        self.gamma = gamma
        self.tol = tol
        self.max_iter = max_iter
        self.cache_size = cache_size
        self.precompute_kernel = precompute_kernel

    def _resolve_gamma(self, X):
        if self.gamma == "scale":
            variance = X.var()
            return 1.0 / (X.shape[1] * variance) if variance != 0 else 1.0
        if self.gamma == "auto":
            return 1.0 / X.shape[1]
        return float(self.gamma)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit one binary RBF SVC per class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).

        Returns
        -------
        self : object
        """
        X, y = validate_data(self, X, y, dtype=np.float64, order="C")
        check_classification_targets(y)
        self.classes_, y_encoded = np.unique(y, return_inverse=True)
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the data, but the "
                f"data contains only 1 class: {self.classes_[0]!r}."
            )
        self.gamma_ = self._resolve_gamma(X)
        precompute = self.precompute_kernel is True or (
            self.precompute_kernel == "auto" and X.shape[0] <= _MAX_PRECOMPUTED_ROWS
        )
        train = rbf_kernel(X, gamma=self.gamma_) if precompute else X
        # Two classes: "class 0 vs rest" is the mirror of "class 1 vs rest" (same SVM,
        # negated), so one problem suffices, as in scikit-learn's binary decision_function.
        targets = [y_encoded == 1] if n_classes == 2 else [y_encoded == k for k in range(n_classes)]
        supports, coefs, intercepts, n_iter = [], [], [], []
        for target in targets:
            svc = SVC(
                kernel="precomputed" if precompute else "rbf",
                C=self.C,
                gamma=self.gamma_,
                tol=self.tol,
                max_iter=self.max_iter,
                cache_size=self.cache_size,
            ).fit(train, target)
            supports.append(svc.support_)
            coefs.append(svc.dual_coef_[0])
            intercepts.append(svc.intercept_[0])
            n_iter.append(svc.n_iter_[0])
        self.support_ = np.unique(np.concatenate(supports))
        self.dual_coef_ = np.zeros((len(self.support_), len(targets)))
        for k, (support, coef) in enumerate(zip(supports, coefs)):
            self.dual_coef_[np.searchsorted(self.support_, support), k] = coef
        self.support_vectors_ = X[self.support_]
        self.intercept_ = np.asarray(intercepts, dtype=np.float64)
        self.n_support_ = np.array([len(s) for s in supports])
        self.n_iter_ = np.asarray(n_iter)
        return self

    def decision_function(self, X):
        """Score of each class: the binary SVC of that class against the rest.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes), or (n_samples,) for two classes
            For two classes, the score of ``classes_[1]`` (that of ``classes_[0]`` is its
            negative).
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        scores = rbf_kernel(X, self.support_vectors_, gamma=self.gamma_) @ self.dual_coef_ + self.intercept_
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict(self, X):
        """Class with the highest one-vs-all score.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        scores = self.decision_function(X)
        index = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes_[index]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


class RBFKernelMachine(nn.Module):
    """Affine functions of RBF kernel values over one shared support-vector set (float64).

    ``forward(z) = exp(-gamma * ||z - sv||^2) @ dual_coef + intercept``: all outputs
    (classes) of a one-vs-all SVM in one kernel matrix and one matrix product,
    differentiable with respect to ``z``.

    Parameters
    ----------
    support_vectors : array of shape (n_SV, n_features)
    dual_coef : array of shape (n_SV, n_outputs)
    intercept : array of shape (n_outputs,)
    gamma : float
    """

    def __init__(self, support_vectors, dual_coef, intercept, gamma):
        super().__init__()
        support_vectors = torch.as_tensor(np.asarray(support_vectors, dtype=np.float64))
        self.register_buffer("support_vectors", support_vectors)
        self.register_buffer("support_sq_norms", (support_vectors * support_vectors).sum(dim=1))
        self.register_buffer("dual_coef", torch.as_tensor(np.asarray(dual_coef, dtype=np.float64)))
        self.register_buffer("intercept", torch.as_tensor(np.asarray(intercept, dtype=np.float64)))
        self.gamma = float(gamma)

    def forward(self, z):
        z = z.to(torch.float64)
        # ||z||^2 + ||sv||^2 - 2 z.sv, with the product fused into addmm.
        sq_dist = torch.addmm(self.support_sq_norms, z, self.support_vectors.T, alpha=-2.0)
        if torch.is_grad_enabled() and z.requires_grad:
            z_sq_norms = (z * z).sum(dim=1, keepdim=True)
            kernel = torch.exp((sq_dist + z_sq_norms).clamp_min(0.0) * -self.gamma)
        else:  # inference: no (n, d) temporary; update the (n, n_SV) matrix in place
            z_sq_norms = torch.linalg.vector_norm(z, dim=1, keepdim=True).square_()
            kernel = sq_dist.add_(z_sq_norms).clamp_min_(0.0).mul_(-self.gamma).exp_()
        return torch.addmm(self.intercept, kernel, self.dual_coef)


def _is_rbf_svc(estimator):
    return (
        isinstance(estimator, SVC)
        and estimator.kernel == "rbf"
        and hasattr(estimator, "support_vectors_")
        and len(estimator.classes_) == 2
    )


def kernel_machine_from(estimator):
    """:class:`RBFKernelMachine` equal to a fitted estimator's ``decision_function``, or None.

    Supported: :class:`OneVsAllSVC`, a binary RBF :class:`~sklearn.svm.SVC`, and
    :class:`~sklearn.multiclass.OneVsRestClassifier` over binary RBF SVCs. The machine
    returns 2-D scores (one column for binary problems).
    """
    if isinstance(estimator, OneVsAllSVC):
        return RBFKernelMachine(estimator.support_vectors_, estimator.dual_coef_, estimator.intercept_, estimator.gamma_)
    if _is_rbf_svc(estimator):
        return RBFKernelMachine(
            estimator.support_vectors_, estimator.dual_coef_.T, estimator.intercept_, estimator._gamma
        )
    if isinstance(estimator, OneVsRestClassifier) and all(_is_rbf_svc(e) for e in estimator.estimators_):
        gammas = {e._gamma for e in estimator.estimators_}
        if len(gammas) != 1:
            return None
        # All binary SVCs were trained on the same rows: merge their supports by row index.
        support = np.unique(np.concatenate([e.support_ for e in estimator.estimators_]))
        support_vectors = np.empty((len(support), estimator.estimators_[0].support_vectors_.shape[1]))
        dual_coef = np.zeros((len(support), len(estimator.estimators_)))
        for k, e in enumerate(estimator.estimators_):
            rows = np.searchsorted(support, e.support_)
            support_vectors[rows] = e.support_vectors_
            dual_coef[rows, k] = e.dual_coef_[0]
        intercept = np.array([e.intercept_[0] for e in estimator.estimators_])
        return RBFKernelMachine(support_vectors, dual_coef, intercept, gammas.pop())
    return None
