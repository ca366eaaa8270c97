"""RBF kernels: blockwise squared distances, gamma, and kernel machines as torch modules.

:class:`RBFKernelMachine` evaluates a one-vs-all kernel expansion (``OneVsAllSVC``,
``NystroemOneVsAll``, or scikit-learn's RBF ``SVC`` and ``OneVsRestClassifier(SVC)``)
as a differentiable torch computation; :func:`kernel_machine_from` builds it from a
fitted estimator. ``_KernelExpansionMixin`` is the estimator side those classifiers
share: ``rbf(X, support_vectors_) @ dual_coef_ + intercept_``.
"""

import numpy as np
import scipy.linalg.blas
import torch
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from .._core import svc_gamma

# Float64 values per block of rows in squared_distances (128 MB): bounds its temporaries.
_BLOCK_VALUES = 2**24


# ----------------------------------------------------------------------------- kernels


def squared_distances(X, Y=None, *, device="cpu", dtype=torch.float64):
    """Squared Euclidean distances ``||x_i - y_j||^2`` as a float64 numpy array ``(n, m)``.

    Computed in float64 (``||x||^2 + ||y||^2 - 2 x.y``) on ``device``, block by block so
    that only the output is large. ``X`` and ``Y`` may be float32: blocks are cast on the
    device, never the whole matrix. With ``Y`` None the result is symmetric and the
    diagonal exactly zero, as in scikit-learn's ``euclidean_distances``; on the CPU its
    Gram matrix is then one symmetric rank-k update (BLAS ``syrk``, half the work of a
    matrix product), accumulated over blocks of columns. ``dtype=torch.float32``
    computes in float32 (twice as fast; float32 ``X`` is then not copied at all).
    """
    if Y is None and torch.device(device).type == "cpu":
        return _symmetric_squared_distances(X, np.float64 if dtype == torch.float64 else np.float32)
    symmetric = Y is None
    x_all = torch.from_numpy(np.ascontiguousarray(X))
    y_all = x_all if symmetric else torch.from_numpy(np.ascontiguousarray(Y))
    n, m = x_all.shape[0], y_all.shape[0]
    block = int(min(max(_BLOCK_VALUES // max(x_all.shape[1], 1), 64), 8192))
    out = np.empty((n, m), dtype=np.float64)
    out_t = torch.from_numpy(out)

    def rows(tensor, start):
        chunk = tensor[start : start + block].to(device=device, dtype=dtype)
        return chunk, (chunk * chunk).sum(dim=1)

    for i in range(0, n, block):
        xi, xi_sq = rows(x_all, i)
        for j in range(i if symmetric else 0, m, block):
            yj, yj_sq = (xi, xi_sq) if symmetric and j == i else rows(y_all, j)
            tile = torch.addmm(yj_sq, xi, yj.T, alpha=-2.0).add_(xi_sq[:, None]).clamp_min_(0.0).cpu()
            out_t[i : i + block, j : j + block] = tile
            if symmetric and j != i:
                out_t[j : j + block, i : i + block] = tile.T
    if symmetric:
        np.fill_diagonal(out, 0.0)
    return out


def _shared_tensor(array):
    """``array`` as a tensor sharing its memory, or None when the memory is read-only (a memmap:
    ``torch.from_numpy`` warns on it). The caller then takes numpy's path."""
    return torch.from_numpy(array) if array.flags.writeable else None


def _symmetric_squared_distances(X, dtype=np.float64):
    """:func:`squared_distances` of ``X`` with itself on the CPU, from one ``syrk`` Gram matrix in ``dtype``."""
    X = np.ascontiguousarray(X)
    n, d = X.shape
    syrk = scipy.linalg.blas.dsyrk if dtype == np.float64 else scipy.linalg.blas.ssyrk
    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
    # Fortran-ordered, so that BLAS updates it in place; syrk fills its upper triangle.
    gram = np.zeros((n, n), dtype=dtype, order="F")
    # Columns are cast block by block (bounded memory); already of the dtype, all at once.
    block = d if X.dtype == dtype else max(_BLOCK_VALUES // max(n, 1), 1)
    for start in range(0, d, block):
        # The transposed C-ordered columns are a Fortran-ordered (k, n) matrix: no copy.
        columns = X[:, start : start + block]
        tensor = _shared_tensor(columns)  # torch casts a strided block on all cores, numpy on one
        columns = (
            np.ascontiguousarray(columns, dtype=dtype)
            if tensor is None
            else tensor.to(torch_dtype).contiguous().numpy()  # X itself in the dtype: no copy
        )
        gram = syrk(1.0, columns.T, beta=1.0, c=gram, trans=1, lower=0, overwrite_c=1)
    # syrk filled the upper triangle of the Fortran array: the lower one of its C-ordered view.
    out = gram.T if dtype == np.float64 else gram.T.astype(np.float64)
    del gram
    squared_norms = np.diag(out).copy()
    # ||x_i||^2 + ||x_j||^2 - 2 x_i.x_j, in place; only the lower triangle is kept.
    np.multiply(out, -2.0, out=out)
    out += squared_norms[:, None]
    out += squared_norms[None, :]
    np.maximum(out, 0.0, out=out)
    np.fill_diagonal(out, 0.0)
    # Mirror the lower triangle onto the upper one: the matrix is exactly symmetric.
    tile = 512
    for start in range(0, n, tile):
        block = slice(start, start + tile)
        out[block, block] = np.tril(out[block, block]) + np.tril(out[block, block], -1).T
        out[block, start + tile :] = out[start + tile :, block].T
    return out


def _rbf_in_place(squared_distances, gamma):
    """``exp(-gamma * squared_distances)``, overwriting the distances."""
    return np.exp(np.multiply(squared_distances, -gamma, out=squared_distances), out=squared_distances)


def _row_moments(X):
    """Per-row sums and sums of squares of ``X`` (float64): what ``gamma='scale'`` needs of any row subset."""
    return X.sum(axis=1, dtype=np.float64), np.einsum("ij,ij->i", X, X, dtype=np.float64)


def _variance(row_sums, row_sq_sums, rows, n_features):
    """Variance of all values in ``X[rows]`` from per-row sums (no copy of the rows)."""
    count = len(rows) * n_features
    mean = row_sums[rows].sum() / count
    return max(row_sq_sums[rows].sum() / count - mean * mean, 0.0)


def _resolve_gamma(gamma, n_features, row_sums, row_sq_sums, rows):
    """The RBF coefficient of ``X[rows]`` from X's per-row sums: 'scale' is ``1 / (n_features * var)``,
    'auto' ``1 / n_features``."""
    if gamma == "scale":
        variance = _variance(row_sums, row_sq_sums, rows, n_features)
        return 1.0 / (n_features * variance) if variance != 0 else 1.0
    if gamma == "auto":
        return 1.0 / n_features
    return float(gamma)


class _KernelExpansionMixin:
    """Scores ``rbf(X, support_vectors_) @ dual_coef_ + intercept_`` (fitted through :class:`FoldFittingMixin`).

    Fitted attributes: ``support_vectors_``, ``dual_coef_`` (one column per output),
    ``intercept_``, ``gamma_``, ``classes_``. :func:`kernel_machine_from` turns such an
    estimator into an :class:`RBFKernelMachine`.
    """

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
    """Affine functions of RBF kernel values over one shared support-vector set.

    ``forward(z) = exp(-gamma * ||z - sv||^2) @ dual_coef + intercept``: all outputs
    (classes) of a one-vs-all SVM in one kernel matrix and one matrix product,
    differentiable with respect to ``z``. The weights are stored in float64;
    ``forward(z, dtype=torch.float32)`` computes in float32 (weights cast once and
    cached per device), about twice as fast on CPUs, and returns float64.

    Feature columns that are zero in every support vector (a ReLU layer's dead units:
    15-22 % of the columns of the DNR tutorial's conv layers) add nothing to the
    products ``z . sv``, so only the other columns are stored and multiplied;
    ``||z||^2`` still counts every column.

    Parameters
    ----------
    support_vectors : array of shape (n_SV, n_features)
    dual_coef : array of shape (n_SV, n_outputs)
    intercept : array of shape (n_outputs,)
    gamma : float

    Attributes
    ----------
    support_vectors : tensor of shape (n_SV, n_kept_features)
        The support vectors' kept columns.
    feature_index : tensor of shape (n_kept_features,) or None
        The kept columns, or None when every column is kept (and in machines saved
        before columns were dropped).
    """

    def __init__(self, support_vectors, dual_coef, intercept, gamma):
        super().__init__()
        support_vectors = torch.as_tensor(np.asarray(support_vectors, dtype=np.float64))
        kept = torch.as_tensor(np.flatnonzero(support_vectors.numpy().any(axis=0)))
        feature_index = None
        if kept.numel() < support_vectors.shape[1]:
            feature_index = kept
            support_vectors = support_vectors.index_select(1, kept)  # one contiguous copy
        self.register_buffer("support_vectors", support_vectors)
        self.register_buffer("support_sq_norms", torch.linalg.vector_norm(support_vectors, dim=1).square_())
        self.register_buffer("dual_coef", torch.as_tensor(np.asarray(dual_coef, dtype=np.float64)))
        self.register_buffer("intercept", torch.as_tensor(np.asarray(intercept, dtype=np.float64)))
        self.register_buffer("feature_index", feature_index)
        self.gamma = float(gamma)
        self._cast_cache = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cast_cache"] = {}
        return state

    def __setstate__(self, state):
        state.setdefault("_cast_cache", {})
        super().__setstate__(state)

    def _weights(self, dtype):
        weights = (self.support_vectors, self.support_sq_norms, self.dual_coef, self.intercept)
        if dtype == torch.float64:
            return weights
        key = (dtype, self.support_vectors.device)
        if key not in self._cast_cache:
            self._cast_cache.clear()  # weights moved to another device: drop the old copies
            # Normal tensors even when first called under inference mode, so that later
            # calls with gradients (attacks) can use them.
            with torch.inference_mode(False), torch.no_grad():
                self._cast_cache[key] = tuple(w.to(dtype, copy=True) for w in weights)
        return self._cast_cache[key]

    def _products_term(self, z, support_vectors, support_sq_norms):
        """``2 gamma z.sv - gamma ||sv||^2`` (n, n_SV): one addmm over the kept columns of ``z``."""
        # A buffer table lookup: machines loaded from files written before the buffer existed lack it.
        feature_index = self._buffers.get("feature_index")
        kept = z if feature_index is None else z.index_select(1, feature_index)
        return torch.addmm(support_sq_norms, kept, support_vectors.T, beta=-self.gamma, alpha=2.0 * self.gamma)

    def forward(self, z, dtype=torch.float64):
        support_vectors, support_sq_norms, dual_coef, intercept = self._weights(dtype)
        z = z.to(dtype)
        # -gamma * ||z - sv||^2 = 2 gamma z.sv - gamma ||sv||^2 - gamma ||z||^2: the first two
        # terms are one addmm; the last, the clamp (rounding can make distances negative)
        # and exp are one more pass over the (n, n_SV) matrix, in place at inference.
        exponent = self._products_term(z, support_vectors, support_sq_norms)
        if torch.is_grad_enabled() and z.requires_grad:
            kernel = torch.exp((exponent - self.gamma * (z * z).sum(dim=1, keepdim=True)).clamp_max(0.0))
        else:  # inference: no (n, d) temporary
            z_term = torch.linalg.vector_norm(z, dim=1, keepdim=True).square_().mul_(self.gamma)
            kernel = exponent.sub_(z_term).clamp_max_(0.0).exp_()
        return torch.addmm(intercept, kernel, dual_coef).to(torch.float64)

    def log_ratio(self, z, offset):
        """Per output, ``log(P + (b - offset)_+) - log(N + (offset - b)_+)``, float64.

        ``P`` and ``N`` are the parts of the kernel expansion with positive and
        negative dual coefficients (``forward(z) = b + P - N``), so the value has
        the sign of ``forward(z) - offset``. Computed in the log domain
        (log-sum-exp of ``-gamma * ||z - sv||^2 + log |dual_coef|``), it stays
        well scaled where every kernel value is tiny and ``forward`` is flat (at
        the intercepts): its gradient pulls towards the nearest support vectors
        of positive weight instead of vanishing with them.

        Parameters
        ----------
        z : tensor of shape (n, n_features)
        offset : float
            Finite level compared with each output.

        Returns
        -------
        log_ratio : tensor of shape (n, n_outputs), float64
        """
        support_vectors, support_sq_norms, dual_coef, intercept = self._weights(torch.float64)
        z = z.to(torch.float64)
        exponent = self._products_term(z, support_vectors, support_sq_norms)
        exponent = (exponent - self.gamma * (z * z).sum(dim=1, keepdim=True)).clamp_max(0.0)
        # Kernel values relative to the row's nearest support vector (the largest is 1): two
        # matrix products instead of a log-sum-exp per output. A part underflows only when all
        # its support vectors are farther than the nearest one by gamma * d^2 > ~700.
        shift = exponent.detach().amax(dim=1, keepdim=True)
        kernel = torch.exp(exponent - shift)
        # Non-positive terms count as the smallest normal float (not 0): every log stays finite,
        # so no gradient is NaN, and the value moves by ~1e-308.
        tiny = torch.finfo(torch.float64).tiny
        gap = intercept - offset

        def log_part(weights, constant):
            log_sum = torch.log((kernel @ weights.clamp_min(0.0)).clamp_min(tiny)) + shift
            return torch.logaddexp(log_sum, constant.clamp_min(tiny).log())

        return log_part(dual_coef, gap) - log_part(-dual_coef, -gap)


def _is_rbf_svc(estimator):
    return (
        isinstance(estimator, SVC)
        and estimator.kernel == "rbf"
        and hasattr(estimator, "support_vectors_")
        and len(estimator.classes_) == 2
    )


def kernel_machine_from(estimator):
    """:class:`RBFKernelMachine` equal to a fitted estimator's ``decision_function``, or None.

    Supported: :class:`OneVsAllSVC`, :class:`NystroemOneVsAll`, a binary RBF :class:`~sklearn.svm.SVC`, and
    :class:`~sklearn.multiclass.OneVsRestClassifier` over binary RBF SVCs. The machine
    returns 2-D scores (one column for binary problems).
    """
    if isinstance(estimator, _KernelExpansionMixin):
        return RBFKernelMachine(
            estimator.support_vectors_, estimator.dual_coef_, estimator.intercept_, estimator.gamma_
        )
    if _is_rbf_svc(estimator):
        return RBFKernelMachine(
            estimator.support_vectors_, estimator.dual_coef_.T, estimator.intercept_, svc_gamma(estimator)
        )
    if isinstance(estimator, OneVsRestClassifier) and all(_is_rbf_svc(e) for e in estimator.estimators_):
        gammas = {svc_gamma(e) for e in estimator.estimators_}
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
