"""The public base of skadv's estimators: subclass it to write a new detector.

A third-party detector subclasses :class:`BaseDetector` (scores from the protected
classifier alone) or :class:`TrainedDetector` (a torch module trained on clean rows) and
gets skadv's fit, thresholds, scores, attack surface and persistence; the contract
checks of skadv's own test suite then apply to it.

:class:`TorchEstimatorMixin` owns what all torch-backed estimators share: adapting the
protected classifier, input validation and reshaping, the one float32 cast, batched
inference under ``torch.inference_mode()``, device resolution, seeding and
persistence. :class:`OffsetOutlierMixin` derives ``decision_function`` and ``predict``
from ``score_samples`` and ``offset_`` (shared with ``DNRDetector``).
:class:`BaseDetector` adds the outlier-detector contract (scores, thresholds,
``detect``) and the hook adaptive attacks optimise.
"""

import copy
import functools
import numbers
from abc import ABCMeta, abstractmethod

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils import Bunch, check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from ._core import (
    MODEL_OUTPUTS,
    AttackSurface,
    Interval,
    StrOptions,
    TensorBatches,
    TrainingNet,
    adapt_model,
    decode_state,
    encode_state,
    fit_context,
    flatten_nd,
    is_fitted_attribute,
    optimizer_options,
    resolve_device,
    resolve_optimizer,
    torch_seed,
    validate_parameter_constraints,
    warn_at_caller,
)
from ._version import __version__
from .exceptions import InconsistentVersionWarning

__all__ = [
    "BaseDetector",
    "OffsetOutlierMixin",
    "TorchEstimatorMixin",
    "TrainedDetector",
    "check_threshold_options",
    "check_threshold_perc",
    "fit_atomically",
    "holdout_split",
]

# ----------------------------------------------------------------------------- helpers

_ROW_BLOCK = 8

# Inference batches hold at most this many float32-sized values (16 MiB), counting each row
# as the copies it expands into while scored, whatever ``inference_batch_size`` says.
_INFERENCE_BUDGET = 2**22

# Default rows per inference batch on a CPU when the networks convolve images (within the
# budget above). The cache-sized batches that suit MLPs give convolutions only 16-40 rows (a
# convolution's activations are many times its input: the budget does not see them).
# Measured on the seed page's conv AE (benchmarks/adversarial_ae_seed.py: 256 rows scored, one
# thread, CPU seconds on a loaded 2-core machine, best of 15): channels last, 907 rows/s at
# 64-row batches, 901 at 32, 685 at 256 (its 64 MiB activations are fresh pages every batch);
# channels first, 624-663 at 16-64 rows, 470 at 256. Two threads split larger batches better.
_CPU_CONV_INFERENCE_ROWS = 64

# Scores of a channels-last probe must match channels-first ones within these tolerances
# (float32 rounding of the convolutions moves them by ~1e-6); anything further means the
# networks read the memory layout, and ``memory_format='auto'`` stays channels-first.
_CHANNELS_LAST_RTOL, _CHANNELS_LAST_ATOL = 1e-3, 1e-5
_CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)


def fit_atomically(fit):
    """Decorate ``fit`` so that it leaves the estimator as before when it fails or is interrupted.

    ``fit`` runs on a staged shallow copy holding the parameters but none of the fitted
    attributes; only when it returns are its fitted attributes committed, replacing all
    the previous ones at once. An exception (or a KeyboardInterrupt) leaves the previous
    fitted state intact, or the estimator unfitted: never a mix of both.

    Parameters
    ----------
    fit : callable
        The estimator's ``fit(self, *args, **kwargs)``; it sets fitted attributes (names
        ending with ``_``) on ``self``.

    Returns
    -------
    wrapper : callable
        ``fit`` run on the staged copy, returning ``self``.

    Examples
    --------
    >>> from sklearn.base import BaseEstimator
    >>> from skadv.base import fit_atomically
    >>> class Mean(BaseEstimator):
    ...     @fit_atomically
    ...     def fit(self, X):
    ...         self.mean_ = sum(X) / len(X)
    ...         if self.mean_ < 0:
    ...             raise ValueError("negative mean")
    >>> est = Mean().fit([1.0, 3.0])
    >>> try:
    ...     est.fit([-5.0, -1.0])
    ... except ValueError:
    ...     pass
    >>> est.mean_  # the failed fit left the previous state
    2.0
    """

    @functools.wraps(fit)
    def wrapper(self, *args, **kwargs):
        staged = type(self).__new__(type(self))
        staged.__dict__.update({k: v for k, v in self.__dict__.items() if not is_fitted_attribute(k)})
        fit(staged, *args, **kwargs)
        state = {k: v for k, v in self.__dict__.items() if not is_fitted_attribute(k)}
        state.update({k: v for k, v in staged.__dict__.items() if is_fitted_attribute(k)})
        # One assignment: a concurrent reader sees the old fitted state or the new one.
        self.__dict__ = state
        return self

    return wrapper


def check_threshold_perc(threshold_perc):
    """Validate ``infer_threshold``'s percent of rows to accept; warn when it looks like a fraction.

    Parameters
    ----------
    threshold_perc : float in [0, 100]
        Percent of rows to accept. A value in (0, 1] is accepted with a ``UserWarning``
        (it probably meant a fraction).

    Raises
    ------
    ValueError
        When ``threshold_perc`` is not a real number in [0, 100].

    Examples
    --------
    >>> from skadv.base import check_threshold_perc
    >>> check_threshold_perc(95)
    >>> check_threshold_perc(120)
    Traceback (most recent call last):
    ...
    ValueError: threshold_perc must be a percent in [0, 100], got 120.
    """
    is_percent = isinstance(threshold_perc, numbers.Real) and not isinstance(threshold_perc, bool)
    if not is_percent or not 0 <= threshold_perc <= 100:
        raise ValueError(f"threshold_perc must be a percent in [0, 100], got {threshold_perc!r}.")
    if 0 < threshold_perc <= 1:
        warn_at_caller(
            f"threshold_perc={threshold_perc} is a percent: it accepts {threshold_perc} % of X and flags the "
            f"rest. To accept a fraction {threshold_perc} of X, pass threshold_perc={100 * threshold_perc:g}.",
            UserWarning,
        )


def check_threshold_options(margin, batch_size):
    """Validate ``infer_threshold``'s ``margin`` and ``batch_size`` (alibi-detect's arguments).

    Parameters
    ----------
    margin : float
        Added to the threshold on the adversarial score, as alibi-detect adds it: a
        positive margin flags fewer rows.
    batch_size : int or None
        alibi-detect's scoring batch. Accepted for its call; it changes no result
        (skadv's scores do not depend on the batch) and scoring batches follow the
        estimator's ``inference_batch_size``.

    Returns
    -------
    margin : float

    Raises
    ------
    ValueError
        When ``margin`` is not a finite real number or ``batch_size`` not a positive int.

    Examples
    --------
    >>> from skadv.base import check_threshold_options
    >>> check_threshold_options(0.5, None)
    0.5
    """
    if not isinstance(margin, numbers.Real) or isinstance(margin, bool) or not np.isfinite(margin):
        raise ValueError(f"margin must be a finite real number, got {margin!r}.")
    if batch_size is not None and (
        not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1
    ):
        raise ValueError(
            f"batch_size must be a positive int or None, got {batch_size!r}. It is accepted for "
            "alibi-detect's call and changes no result; skadv's scoring batches are set by the "
            "inference_batch_size parameter."
        )
    return float(margin)


def holdout_split(n_samples, validation_fraction, random_state):
    """Training and held-out row indices of ``fit(X)`` under ``validation_fraction``.

    The held-out rows are the test rows of
    ``train_test_split(np.arange(n_samples), test_size=validation_fraction,
    random_state=random_state)``: with an int ``random_state``, the same rows at every
    fit, and a manual ``train_test_split`` of ``X`` with the same arguments gives them.

    Parameters
    ----------
    n_samples : int
    validation_fraction : float in (0, 1)
    random_state : int, RandomState instance or None

    Returns
    -------
    train, held_out : ndarray of int

    Raises
    ------
    ValueError
        When either part would be empty.

    Examples
    --------
    >>> from skadv.base import holdout_split
    >>> train, held_out = holdout_split(10, 0.2, random_state=0)
    >>> len(train), len(held_out)
    (8, 2)
    """
    from sklearn.model_selection import train_test_split

    n_held_out = int(np.ceil(validation_fraction * n_samples))
    if n_held_out < 1 or n_samples - n_held_out < 1:
        raise ValueError(
            f"validation_fraction={validation_fraction} of {n_samples} rows leaves "
            f"{n_samples - n_held_out} rows to train on and {n_held_out} to set the threshold from; "
            "both need rows. Pass more rows or another validation_fraction (None: no held-out rows)."
        )
    return train_test_split(np.arange(n_samples), test_size=validation_fraction, random_state=random_state)


# ----------------------------------------------------------------------------- the mixin


class TorchEstimatorMixin:
    """Input handling, batching, device, seeding and persistence for torch-backed estimators.

    Subclasses declare ``model``, ``input_shape``, ``inference_batch_size``, ``device``
    and ``random_state`` parameters (and ``batch_size`` where they train or read their
    training rows in batches).

    See Also
    --------
    BaseDetector : The detector template built on it.

    Examples
    --------
    >>> from skadv import DeepNeuralRejection
    >>> from skadv.base import TorchEstimatorMixin
    >>> issubclass(DeepNeuralRejection, TorchEstimatorMixin)  # a torch-backed classifier
    True
    """

    #: Float32-sized values a batch holds on a CPU when ``inference_batch_size`` is None
    #: (on CUDA: the whole budget).
    _cpu_default_inference_values = _INFERENCE_BUDGET

    #: Rows per batch on a CPU when ``inference_batch_size`` is None and a fitted network
    #: convolves image rows (capped by the budget); None applies the values rule above.
    _cpu_conv_inference_rows = None

    _torch_parameter_constraints = {
        "model": "no_validation",
        "input_shape": [tuple, list, None],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "inference_batch_size": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "memory_format": [StrOptions({"auto", "channels_last", "contiguous"})],
        "device": [str],
        "random_state": ["random_state"],
    }

    # -- validation ---------------------------------------------------------
    def _validate_fit_input(self, X):
        X, nd_shape = flatten_nd(X)
        X = validate_data(self, X, dtype=[np.float32, np.float64])
        n_features = X.shape[1]
        if self.input_shape is not None:
            shape = tuple(int(s) for s in self.input_shape)
            if int(np.prod(shape)) != n_features:
                raise ValueError(
                    f"input_shape={shape} holds {int(np.prod(shape))} values but X has {n_features} features per row."
                )
        else:
            shape = nd_shape or (n_features,)
        self.input_shape_ = shape
        # ptp per column: one pass, no (n, d) temporary.
        if X.shape[0] == 1 or not np.ptp(X, axis=0).any():
            warn_at_caller(
                f"{type(self).__name__} is fitted on "
                + ("a single row" if X.shape[0] == 1 else f"{X.shape[0]} copies of a single row")
                + ": it cannot learn how clean data varies, so its scores and threshold mean "
                "little. Fit it on many distinct clean rows.",
                UserWarning,
            )
        return X

    def _validate_predict_input(self, X):
        check_is_fitted(self)
        X, _ = flatten_nd(X)
        return validate_data(self, X, dtype=[np.float32, np.float64], reset=False)

    # -- tensors ------------------------------------------------------------
    def _to_tensor(self, X, n_rows=None, buffer=None):
        """Rows of ``X`` as a float32 tensor shaped ``(n, *input_shape_)`` on ``device_`` (the one cast).

        Always a copy, never a view of ``X``: the user's model or ``preprocess_fn`` may write
        into its input (e.g. normalise it in place). With ``n_rows`` larger than ``len(X)``
        the rows are zero-padded to ``n_rows``, in the same copy. ``buffer`` (a float32
        array of at least ``n_rows`` rows) is filled instead of a new array: allocating
        fresh pages for every batch costs a noticeable share of a small model's pass.
        """
        n_rows = X.shape[0] if n_rows is None else n_rows
        if buffer is None:
            buffer = np.empty((n_rows,) + X.shape[1:], dtype=np.float32)
        array = buffer[:n_rows]
        array[: X.shape[0]] = X
        array[X.shape[0] :] = 0
        x = torch.from_numpy(array)
        return x.reshape((n_rows,) + tuple(self.input_shape_)).to(self.device_)

    def _iter_batches(self, X, batch_size=None):
        """Consecutive batches of ``X`` as tensors.

        Of :meth:`_inference_batch_size` rows unless ``batch_size`` is given.
        """
        batch_size = self._inference_batch_size() if batch_size is None else batch_size
        for start in range(0, X.shape[0], batch_size):
            yield self._to_tensor(X[start : start + batch_size])

    def _inference_values_per_row(self):
        """How many float32-sized values one row expands into while it is scored (roughly).

        The input's own size by default; estimators that score several variants of a row
        (reconstructions, samples) or compare it with stored data multiply it.
        """
        return self.n_features_in_

    def _inference_batch_size(self):
        """Rows per inference batch: ``inference_batch_size``, capped so that a batch stays within the memory budget.

        None (the default, and the value for an estimator without the parameter) takes
        as many rows as fill the budget on CUDA; on a CPU ``_cpu_conv_inference_rows``
        (when set and a fitted network convolves image rows), else as many rows as fill
        ``_cpu_default_inference_values``.
        The parameter is validated here with the same constraint as in ``fit``, since it
        may have been changed with ``set_params`` after fitting.
        """
        requested = getattr(self, "inference_batch_size", None)
        validate_parameter_constraints(
            {"inference_batch_size": TorchEstimatorMixin._torch_parameter_constraints["inference_batch_size"]},
            {"inference_batch_size": requested},
            caller_name=type(self).__name__,
        )
        if requested is None:
            if str(getattr(self, "device_", "cpu")).startswith("cuda"):
                return self._budget_rows()
            if self._cpu_conv_inference_rows is not None and self._convolves_images():
                return min(self._cpu_conv_inference_rows, self._budget_rows())
            return self._budget_rows(self._cpu_default_inference_values)
        return int(min(requested, self._budget_rows()))

    def _fitted_modules(self):
        """The fitted torch modules (attributes ending in ``_``): the networks scoring runs."""
        fitted = (value for name, value in vars(self).items() if is_fitted_attribute(name))
        return [value for value in fitted if isinstance(value, nn.Module)]

    def _convolves_images(self):
        """Whether rows are images ``(C, H, W)`` and a fitted network has 2-D (transposed) convolutions."""
        if len(getattr(self, "input_shape_", ())) != 3:
            return False
        return any(isinstance(layer, _CONVOLUTIONS) for module in self._fitted_modules() for layer in module.modules())

    def _use_memory_format(self, memory_format):
        """Set ``memory_format_``; 'channels_last' lays the fitted networks' 4-D weights out to match.

        'contiguous' leaves weights as they are (channels-first, as trained), unless they
        were laid out channels last here.
        """
        if memory_format == "channels_last" or getattr(self, "memory_format_", None) == "channels_last":
            layout = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
            for module in self._fitted_modules():
                module.to(memory_format=layout)
        self.memory_format_ = memory_format

    def _resolve_memory_format(self, X):
        """Resolve the ``memory_format`` parameter on the fitted networks (sets ``memory_format_``).

        'auto' is 'channels_last' when the rows are images, a network convolves them and
        the scores of the first rows of ``X`` with channels-last batches and weights match
        the channels-first ones (a network that reads its activations' memory layout,
        e.g. with ``h.view(n, -1)``, fails or differs and keeps 'contiguous'). Channels-last
        weights are what makes oneDNN's convolutions faster: a channels-last batch through
        channels-first weights runs at the channels-first speed.
        """
        requested = getattr(self, "memory_format", "contiguous")
        if requested == "contiguous" or (requested == "auto" and not self._convolves_images()):
            self._use_memory_format("contiguous")
            return
        if len(self.input_shape_) != 3:
            raise ValueError(
                f"memory_format='channels_last' needs image rows (C, H, W); input_shape_ is {self.input_shape_}. "
                "Set input_shape to the image shape, or memory_format='auto'."
            )
        rows = X[:_ROW_BLOCK]
        self._use_memory_format("contiguous")
        reference = self._adversarial_score_validated(rows)
        self._use_memory_format("channels_last")
        try:
            probe, problem = self._adversarial_score_validated(rows), None
        except RuntimeError as exc:
            probe, problem = None, str(exc)
        if probe is not None and not np.allclose(
            probe, reference, rtol=_CHANNELS_LAST_RTOL, atol=_CHANNELS_LAST_ATOL, equal_nan=True
        ):
            problem = f"its scores differ from channels-first ones by up to {np.nanmax(np.abs(probe - reference)):.3g}"
        if problem is None:
            return
        self._use_memory_format("contiguous")
        if requested == "channels_last":
            raise ValueError(
                "memory_format='channels_last' but the networks do not score channels-last batches as "
                f"channels-first ones: {problem}. A network that reads its activations' layout (e.g. "
                "h.view(n, -1); h.flatten(1) or h.reshape(n, -1) does not) needs memory_format='contiguous' "
                "(or 'auto')."
            )

    def _budget_rows(self, values=_INFERENCE_BUDGET):
        """The most rows (a multiple of 8) whose scoring holds at most ``values`` float32-sized values."""
        budget_rows = values // max(1, int(self._inference_values_per_row()))
        return max(_ROW_BLOCK, budget_rows // _ROW_BLOCK * _ROW_BLOCK)

    def _batched(self, fn, X):
        """Apply ``fn`` (tensor batch → tensor) to ``X`` in batches under inference mode; numpy float64.

        Batches hold :meth:`_inference_batch_size` rows, so memory stays bounded however
        large ``inference_batch_size`` is. Each batch is zero-padded to a multiple of 8 rows: CPU
        matrix kernels treat remainder rows differently, so without padding a row's
        float32 score would depend on how many rows were scored with it. Results go
        straight into one preallocated array: keeping a list of small per-batch arrays
        interleaved with the batches' large temporaries fragments the heap, which then
        never shrinks (measured: hundreds of MB over 1e6 rows). Image batches go to ``fn`` in
        channels-last memory where ``memory_format_`` is 'channels_last' (see
        :meth:`_resolve_memory_format`).
        """
        if X.shape[0] == 0:
            raise ValueError("X has no rows.")
        batch_size = self._inference_batch_size()
        channels_last = getattr(self, "memory_format_", "contiguous") == "channels_last"
        # One input buffer for all batches: each batch's results are copied out before the next.
        buffer = np.empty((-(-min(batch_size, X.shape[0]) // _ROW_BLOCK) * _ROW_BLOCK,) + X.shape[1:], np.float32)
        out = None
        with torch.inference_mode():
            for start in range(0, X.shape[0], batch_size):
                rows = X[start : start + batch_size]
                n_rows = rows.shape[0]
                x = self._to_tensor(rows, -(-n_rows // _ROW_BLOCK) * _ROW_BLOCK, buffer)
                if channels_last and x.ndim == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                batch = fn(x)[:n_rows].detach().cpu()
                if out is None:
                    out = np.empty((X.shape[0],) + tuple(batch.shape[1:]), dtype=np.float64)
                out[start : start + n_rows] = batch.numpy()
        return out

    # -- setup --------------------------------------------------------------
    def _fit_seed(self):
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _preprocess(self, x):
        preprocess_fn = getattr(self, "preprocess_fn", None)
        return x if preprocess_fn is None else preprocess_fn(x)

    def _setup_model(self, X, allow_sklearn=False):
        """Resolve the device and take a frozen private copy of the protected model.

        The copy is probed once on the first rows of ``X`` (see
        :meth:`~skadv.utils.ModelAdapter.check_output`), which also materialises its lazy
        layers (call this under the fit seed so that their initialisation is reproducible).
        """
        self.device_ = resolve_device(self.device, fitting=True)
        adapter = adapt_model(
            self.model, model_output=getattr(self, "model_output", "auto"), need_gradients=not allow_sklearn
        ).to(self.device_)
        adapter.check_output(self._preprocess(self._to_tensor(X[:_ROW_BLOCK])))
        self.model_, self.sklearn_model_ = adapter.module, adapter.black_box
        return adapter

    # -- persistence --------------------------------------------------------
    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = encode_state(state)
        state["_skadv_version"] = __version__
        return state

    def __setstate__(self, state):
        state = decode_state(state, type(self).__name__)
        saved_version = state.pop("_skadv_version", None)
        if saved_version != __version__:
            saved = "an unknown skadv version" if saved_version is None else f"skadv {saved_version}"
            warn_at_caller(
                f"Loading {type(self).__name__} saved with {saved} into skadv "
                f"{__version__}; this might lead to breaking code or invalid results.",
                InconsistentVersionWarning,
            )
        if hasattr(super(), "__setstate__"):
            super().__setstate__(state)
        else:
            self.__dict__.update(state)
        if "device_" in self.__dict__:
            # Stored weights are on the CPU; map them to the saved device when it exists here.
            self.device_ = resolve_device(self.device_, fitting=False)
            for value in self.__dict__.values():
                if isinstance(value, nn.Module):
                    value.to(self.device_)


# ----------------------------------------------------------------------------- detectors


class OffsetOutlierMixin(OutlierMixin):
    """``decision_function`` and ``predict`` of an outlier detector from its ``score_samples`` and ``offset_``.

    scikit-learn's convention: ``score_samples`` is higher for more normal rows,
    ``decision_function = score_samples - offset_`` and ``predict`` is +1 where the
    decision is >= 0, -1 elsewhere. Subclasses define ``score_samples(X)`` (validating
    ``X`` and checking that they are fitted) and ``offset_``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.base import BaseEstimator
    >>> from skadv.base import OffsetOutlierMixin
    >>> class Norm(OffsetOutlierMixin, BaseEstimator):
    ...     def fit(self, X, y=None):
    ...         self.offset_ = -2.0
    ...         return self
    ...     def score_samples(self, X):
    ...         return -np.linalg.norm(X, axis=1)
    >>> Norm().fit(None).predict([[1.0, 0.0], [3.0, 4.0]])
    array([ 1, -1])
    """

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for flagged rows (adversarial, or rejected).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        decision : ndarray of shape (n_samples,), float64
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """+1 for normal rows, -1 for flagged rows (adversarial, or rejected).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,), int
        """
        # Compared directly rather than through decision >= 0: an infinite score equal to an
        # infinite offset (e.g. threshold=None, offset -inf) is on the accepted side, not NaN.
        return np.where(self.score_samples(X) >= self.offset_, 1, -1)


class BaseDetector(OffsetOutlierMixin, TorchEstimatorMixin, BaseEstimator, metaclass=ABCMeta):
    """Base class of skadv's adversarial detectors (outlier-detector contract).

    ``fit``, the threshold, the scores, ``predict``, ``detect`` and persistence are
    written here once. A detector implements two hooks:

    * ``_fit_detector(self, X, seed)``: learn from the validated training rows ``X``
      (2-D float; ``model_``, ``device_`` and ``input_shape_`` are set, the torch RNG is
      seeded with ``seed``), storing fitted attributes on ``self``;
    * ``_score_tensor(self, x)``: the adversarial score ``(n,)`` of a preprocessed batch
      shaped ``(n, *input_shape_)``, higher = more adversarial, differentiable.

    and declares its parameters in ``__init__`` and ``_parameter_constraints``, and
    ``_accepts_sklearn_model`` when it needs no gradient through the protected model.
    A detector that declares a ``validation_fraction`` parameter gets held-out
    thresholds from ``fit`` (see the shared parameter's documentation).
    Detectors that train a torch module use :class:`TrainedDetector`, which writes
    ``_fit_detector`` once. The shared parameters are documented by
    :func:`~skadv._core._docs.fill_detector_doc`.

    See Also
    --------
    TrainedDetector : The base of the detectors that train a torch module.
    skadv.ConfidenceDetector : A detector written on these two hooks alone.

    Examples
    --------
    A detector scoring rows by minus the classifier's top log-probability:

    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skadv.base import BaseDetector
    >>> class LowConfidence(BaseDetector):
    ...     _accepts_sklearn_model = True
    ...     def __init__(self, model=None, *, model_output="auto", threshold=None, contamination=0.05,
    ...                  inference_batch_size=None, preprocess_fn=None, input_shape=None, device="cpu",
    ...                  random_state=None):
    ...         self.model, self.model_output, self.threshold = model, model_output, threshold
    ...         self.contamination, self.inference_batch_size = contamination, inference_batch_size
    ...         self.preprocess_fn, self.input_shape = preprocess_fn, input_shape
    ...         self.device, self.random_state = device, random_state
    ...     def _fit_detector(self, X, seed):
    ...         pass
    ...     def _score_tensor(self, x):
    ...         return -self._model_log_proba(x).max(dim=1).values
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = LogisticRegression(max_iter=500).fit(X / 16, y)
    >>> det = LowConfidence(clf, contamination=0.1).fit(X / 16)
    >>> round(float((det.predict(X / 16) == -1).mean()), 2)
    0.1
    """

    #: True when the score is randomized (the attack surface's ``stochastic``: attacks
    #: then average gradients over draws).
    _stochastic_score = False

    _parameter_constraints = {
        **TorchEstimatorMixin._torch_parameter_constraints,
        "model_output": [StrOptions(set(MODEL_OUTPUTS))],
        "threshold": [numbers.Real, None],
        "contamination": [Interval(numbers.Real, 0, 0.5, closed="right")],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither"), None],
        "preprocess_fn": [callable, None],
    }

    def __setstate__(self, state):
        super().__setstate__(state)
        if "validation_fraction" in self._get_param_names():
            # Detectors saved before the parameter existed trained on all their rows.
            self.__dict__.setdefault("validation_fraction", None)
        if "memory_format" in self._get_param_names():
            # Saved before the parameter existed: scored channels-first, and keep doing so.
            self.__dict__.setdefault("memory_format", "auto")
            if "threshold_" in self.__dict__:
                self.__dict__.setdefault("memory_format_", "contiguous")
                if self.memory_format_ == "channels_last":
                    # Weights are stored channels-first: lay them out as when they were saved.
                    self._use_memory_format("channels_last")

    # -- subclass hooks -----------------------------------------------------
    @abstractmethod
    def _fit_detector(self, X, seed):
        """Learn from the validated training rows ``X`` under the torch seed ``seed``."""

    @abstractmethod
    def _score_tensor(self, x):
        """Adversarial score (n,) of a preprocessed batch; differentiable."""

    #: Whether the protected model may be a scikit-learn classifier: True for detectors
    #: whose training and score need no gradient through the classifier.
    _accepts_sklearn_model = False

    # Cache-sized default batches (2 MiB) on a CPU: the detectors' small networks are bound by
    # elementwise passes over their activations, fastest while those stay in the caches
    # (benchmarks/adversarial_ae.py: 1-4 k rows of 64 features beat 16 k rows by ~20 %).
    _cpu_default_inference_values = 2**19
    # Convolutions on image rows: batches sized for them, not for the caches.
    _cpu_conv_inference_rows = _CPU_CONV_INFERENCE_ROWS

    # -- fit ----------------------------------------------------------------
    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the detector on clean rows ``X`` and set its threshold from their scores.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, *input_shape)
            Clean training data.
        y : Ignored
            Detectors learn from clean data alone.

        Returns
        -------
        self : object
        """
        return self._fit(X)

    @fit_atomically
    def _fit(self, X):
        """Body of ``fit``: validation, setup, training, threshold (committed only on success)."""
        X = self._validate_fit_input(X)
        validation_fraction = getattr(self, "validation_fraction", None)
        seed = self._fit_seed()
        X_threshold = X
        if validation_fraction is not None:
            if self.threshold is not None:
                raise ValueError(
                    f"validation_fraction={validation_fraction} holds rows out only to set the threshold, "
                    f"and threshold={self.threshold} is given: pass one of them (the other None)."
                )
            train, held_out = holdout_split(X.shape[0], validation_fraction, self.random_state)
            X, X_threshold = X[train], X[held_out]
        with torch_seed(seed, resolve_device(self.device, fitting=True)):
            self._setup_model(X, allow_sklearn=self._accepts_sklearn_model)
            self._fit_detector(X, seed)
        if "memory_format" in self._get_param_names():
            self._resolve_memory_format(X)
        self._set_threshold(self._adversarial_score_validated(X_threshold), None)
        return self

    def _set_threshold(self, train_scores, threshold_perc, margin=0.0):
        if threshold_perc is not None:
            self.threshold_ = float(np.percentile(train_scores, threshold_perc)) + margin
        elif self.threshold is not None:
            self.threshold_ = float(self.threshold)
        else:
            self.threshold_ = float(np.percentile(train_scores, 100.0 * (1.0 - self.contamination)))
        self.offset_ = -self.threshold_

    # -- torch pieces -------------------------------------------------------
    def _model_log_proba(self, x):
        """Log-probabilities of the protected classifier for a preprocessed batch."""
        if self.model_ is not None:
            return self.model_(x)
        proba = self.sklearn_model_.predict_proba(x.detach().reshape(x.shape[0], -1).cpu().numpy())
        return torch.log(torch.as_tensor(proba, dtype=torch.float64, device=x.device).clamp_min(1e-12))

    def _torch_adversarial_score(self, x):
        """Differentiable adversarial score (n,) for a raw batch shaped ``(n, *input_shape_)``."""
        return self._score_tensor(self._preprocess(x))

    def attack_surface(self):
        """The public attack protocol: classifier and detector as one differentiable model.

        The detector becomes an extra class (Carlini & Wagner, 2017): ``forward``
        returns the protected classifier's log-probabilities and a "flagged" column
        ``max(log_proba) + adversarial_score - threshold_``, which is the argmax exactly
        when the row is flagged. Adaptive attacks optimise against it; a detector
        built on this base gets it from ``_score_tensor`` alone.

        Returns
        -------
        surface : skadv.utils.AttackSurface
            For the current ``threshold_`` (take a new one after changing it).

        Raises
        ------
        NotFittedError
            When the detector is not fitted.
        ValueError
            When the protected model is a scikit-learn classifier (no gradient).
        """

        check_is_fitted(self)
        if self.model_ is None:
            raise ValueError(
                f"{type(self).__name__} protects a model that is not differentiable: attacks need gradients "
                "through it, and a scikit-learn classifier has none. Protect a torch module or skorch net instead."
            )
        model, preprocess, score, threshold = (
            self.model_,
            self._preprocess,
            self._torch_adversarial_score,
            self.threshold_,
        )

        def classifier(x):
            return model(preprocess(x))

        def forward(x):
            log_proba = classifier(x)
            flagged = log_proba.max(dim=1).values + (score(x) - threshold)
            return torch.cat([log_proba, flagged[:, None]], dim=1)

        with torch.no_grad():
            n_classes = classifier(torch.zeros((1, *self.input_shape_), device=self.device_)).shape[1]
        return AttackSurface(
            forward=forward,
            classifier=classifier,
            n_classes=n_classes,
            reject_index=n_classes,
            device=self.device_,
            input_shape=self.input_shape_,
            stochastic=bool(self._stochastic_score),
            outputs_are_logits=True,
            classes=getattr(self, "classes_", None),
        )

    # -- public scoring API -------------------------------------------------
    def _adversarial_score_validated(self, X):
        return self._batched(self._torch_adversarial_score, X)

    def adversarial_score(self, X):
        """Adversarial score of each row: higher means more likely adversarial.

        This is alibi-detect's ``instance_score``; :meth:`score_samples` is its negative.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,), float64
        """
        return self._adversarial_score_validated(self._validate_predict_input(X))

    def score_samples(self, X):
        """Normality score of each row (higher = more normal), minus :meth:`adversarial_score`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,), float64
        """
        return -self.adversarial_score(X)

    def infer_threshold(self, X, threshold_perc=95, margin=0.0, batch_size=None):
        """Set ``threshold_`` so that ``threshold_perc`` percent of clean ``X`` is accepted.

        ``threshold_`` becomes the ``threshold_perc`` percentile of the adversarial scores
        of ``X`` plus ``margin``, and ``offset_`` its negative, so :meth:`predict` flags
        (-1) the rows whose adversarial score exceeds ``threshold_``.
        ``infer_threshold(X, 100 * (1 - c))`` equals fitting with ``contamination=c`` on
        ``X``. Every skadv detector, DNR included, takes the same arguments with the same
        meaning. alibi-detect's call ``infer_threshold(X, threshold_perc, margin,
        batch_size)`` works unchanged, but its default percentile is 99 where skadv's is
        95 (matching ``contamination=0.05``): pass ``threshold_perc=99`` for alibi's.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Clean data, ideally held out from training.
        threshold_perc : float in [0, 100], default=95
            Share of ``X`` to accept as normal, in percent (95 flags 5 %). A value in
            (0, 1] warns: it is read as a percent, not a fraction.
        margin : float, default=0.0
            Added to the threshold, as in alibi-detect: a positive margin flags fewer
            rows (useful when adversarial rows score far above clean ones).
        batch_size : int, default=None
            alibi-detect's scoring batch, accepted for its call; it changes no result.
            Scoring batches follow ``inference_batch_size``.

        Returns
        -------
        self : object
        """
        check_threshold_perc(threshold_perc)
        margin = check_threshold_options(margin, batch_size)
        self._set_threshold(self.adversarial_score(X), threshold_perc, margin)
        return self

    def detect(self, X):
        """alibi-detect style prediction.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        result : sklearn.utils.Bunch
            ``is_adversarial`` (int 0/1 per row), ``instance_score`` (adversarial
            score), ``meta`` (detector name, threshold).
        """
        score = self.adversarial_score(X)
        return Bunch(
            is_adversarial=self._flagged(score),
            instance_score=score,
            meta={"name": type(self).__name__, "detector_type": "adversarial", "threshold": self.threshold_},
        )

    def _flagged(self, score):
        """alibi-style 0/1 flags: 1 where the adversarial score exceeds ``threshold_``."""
        return (score > self.threshold_).astype(int)

    def _correction(self, score, no_defense, defense):
        """The Bunch ``correct()`` returns: the defense's label where a row is flagged."""
        is_adversarial = self._flagged(score)
        return Bunch(
            corrected=np.where(is_adversarial == 1, defense, no_defense),
            no_defense=no_defense,
            defense=defense,
            is_adversarial=is_adversarial,
            instance_score=score,
        )

    def _preprocessed_array(self, X):
        """Training rows after ``preprocess_fn``, as one float32 array in model shape."""
        with torch.inference_mode():
            parts = [self._preprocess(x).cpu() for x in self._iter_batches(X)]
        return torch.cat(parts).numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class TrainedDetector(BaseDetector):
    """Base of the detectors that train a torch module on the clean rows, through skorch.

    ``_fit_detector`` is written here once: the training rows pass through
    ``preprocess_fn`` (:meth:`_preprocessed_array`); :meth:`_training_targets` gives the
    targets of the training rows, :meth:`_build_module` the module to train; a skorch net
    of class ``_net_class``, configured from the shared training parameters (``epochs``,
    ``batch_size``, ``lr``, ``optimizer``, ``callbacks``, ``verbose``, the fit seed) and
    :meth:`_net_options` (the criterion), fits it; :meth:`_store_trained_module` keeps
    the trained module (in evaluation mode) and ``history_`` skorch's history. A
    subclass implements :meth:`_build_module`, :meth:`_store_trained_module` and
    ``_score_tensor``, and usually :meth:`_net_options`.

    See Also
    --------
    BaseDetector : The template's two hooks.
    skadv.ModelDistillationDetector : A short trained detector to read first.

    Examples
    --------
    >>> from skadv import AdversarialAEDetector, ModelDistillationDetector, VAEDetector
    >>> from skadv.base import TrainedDetector
    >>> all(issubclass(d, TrainedDetector) for d in (AdversarialAEDetector, ModelDistillationDetector, VAEDetector))
    True
    """

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        "epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "optimizer": [StrOptions({"adam", "adamw", "sgd", "rmsprop"}), type],
        "callbacks": [list, tuple, None],
        "verbose": ["verbose"],
    }

    #: The skorch net class that trains the module: a :class:`~skadv._core._skorch.TrainingNet`
    #: (subclass one whose ``get_loss`` needs the input batch, as unsupervised losses do).
    _net_class = TrainingNet

    # -- subclass hooks -----------------------------------------------------
    def _training_targets(self, X_model):
        """Targets ``y`` of the training rows for the net's criterion; None (the default) when unsupervised.

        Called before :meth:`_build_module`, so it may set attributes the module's
        size depends on (e.g. ``n_classes_``).
        """

    @abstractmethod
    def _build_module(self, X_model):
        """The torch module to train, built from the preprocessed training rows ``X_model``.

        ``X_model`` is a float32 array shaped ``(n, ...)`` as the networks see it (after
        ``preprocess_fn``). The module may stay on the CPU (skorch moves it to
        ``device_``). Validate the user's networks here, and set the fitted attributes
        that describe them.
        """

    def _net_options(self):
        """Keyword arguments of the skorch net beyond the training parameters (criterion, ...)."""
        return {}

    @abstractmethod
    def _store_trained_module(self, module):
        """Keep the trained ``module`` (in evaluation mode) as fitted attributes."""

    # -- training -----------------------------------------------------------
    def _fit_detector(self, X, seed):
        X_model = self._preprocessed_array(X)
        targets = self._training_targets(X_model)
        net = self._make_net(self._build_module(X_model), seed, **self._net_options())
        net.fit(X_model, targets)
        self.history_ = [dict(epoch) for epoch in net.history]
        self._store_trained_module(net.module_.eval())

    # -- training through skorch --------------------------------------------
    def _make_net(self, module, seed, **kwargs):
        """A skorch net configured from the estimator's training parameters."""
        from skorch.callbacks import ProgressBar

        callbacks = copy.deepcopy(list(self.callbacks or []))
        if self.verbose:
            callbacks.append(("progress_bar", ProgressBar()))
        return self._net_class(
            module=module,
            optimizer=resolve_optimizer(self.optimizer),
            **optimizer_options(self.optimizer),
            lr=self.lr,
            max_epochs=self.epochs,
            batch_size=self.batch_size,
            train_split=None,
            iterator_train=TensorBatches,
            iterator_train__shuffle=True,
            iterator_train__generator=torch.Generator().manual_seed(seed),
            callbacks=callbacks,
            device=self.device_,
            verbose=int(self.verbose),
            **kwargs,
        )
