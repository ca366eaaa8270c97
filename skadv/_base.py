"""The shared base of every skadv estimator.

:class:`TorchEstimatorMixin` owns what all torch-backed estimators share: adapting the
protected classifier, input validation and reshaping, the one float32 cast, batched
inference under ``torch.inference_mode()``, device resolution, seeding and
persistence. :class:`OffsetOutlierMixin` derives ``decision_function`` and ``predict``
from ``score_samples`` and ``offset_`` (shared with ``DNRDetector``).
:class:`BaseDetector` adds the outlier-detector contract (scores, thresholds,
``detect``) and the hook adaptive attacks optimise.
"""

import contextlib
import copy
import numbers
import warnings
from abc import abstractmethod

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from ._model import MODEL_OUTPUTS, adapt_model
from ._persist import decode_modules, encode_modules
from ._version import __version__


class InconsistentVersionWarning(UserWarning):
    """Warns that an estimator is loaded with a skadv version other than the one that saved it."""


# ----------------------------------------------------------------------------- helpers

# Optimizers by name: a string default keeps the estimator free of torch types (skops trusts it).
_OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}


# Named optimizers torch implements as one fused kernel per step (CPU and CUDA): several
# times faster than the default per-tensor loop on the small networks detectors train.
_FUSED_OPTIMIZERS = {"adam", "adamw", "sgd"}


def resolve_optimizer(optimizer):
    """Map an optimizer name to its torch class; classes pass through."""
    return _OPTIMIZERS[optimizer] if isinstance(optimizer, str) else optimizer


def optimizer_options(optimizer):
    """skorch ``optimizer__*`` arguments for an optimizer name or class."""
    if isinstance(optimizer, str) and optimizer in _FUSED_OPTIMIZERS:
        return {"optimizer__fused": True}
    return {}



@contextlib.contextmanager
def torch_seed(seed, device="cpu"):
    """Run a block under torch's global RNG seeded with ``seed``, restoring it afterwards."""
    devices = []
    if str(device).startswith("cuda") and torch.cuda.is_available():
        devices = [torch.device(device).index or 0]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def resolve_device(device, fitting=True):
    """Map the ``device`` parameter to a torch device string."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        if fitting:
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available on this machine; "
                "use device='cpu' or device='auto'."
            )
        warnings.warn(
            f"This estimator was set up for device={device!r} but CUDA is not available; using the CPU.",
            UserWarning,
        )
        return "cpu"
    return device


_ROW_BLOCK = 8


def _flatten_nd(X):
    """Flatten image-like N-D arrays to 2-D rows, keeping their row shape."""
    shape = getattr(X, "shape", None)
    if shape is not None and getattr(X, "ndim", 0) > 2:
        return np.asarray(X).reshape(shape[0], -1), tuple(shape[1:])
    return X, None


def check_threshold_perc(threshold_perc):
    """Validate ``infer_threshold``'s percent of rows to accept; warn when it looks like a fraction."""
    if isinstance(threshold_perc, bool) or not isinstance(threshold_perc, numbers.Real) or not 0 <= threshold_perc <= 100:
        raise ValueError(f"threshold_perc must be a percent in [0, 100], got {threshold_perc!r}.")
    if 0 < threshold_perc <= 1:
        warnings.warn(
            f"threshold_perc={threshold_perc} is a percent: it accepts {threshold_perc} % of X and flags the "
            f"rest. To accept a fraction {threshold_perc} of X, pass threshold_perc={100 * threshold_perc:g}.",
            UserWarning,
        )


# ----------------------------------------------------------------------------- the mixin


class TorchEstimatorMixin:
    """Input handling, batching, device, seeding and persistence for torch-backed estimators.

    Subclasses declare ``model``, ``input_shape``, ``batch_size``, ``device`` and
    ``random_state`` parameters.
    """

    _torch_parameter_constraints = {
        "model": "no_validation",
        "input_shape": [tuple, list, None],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "device": [str],
        "random_state": ["random_state"],
    }

    # -- validation ---------------------------------------------------------
    def _validate_fit_input(self, X):
        X, nd_shape = _flatten_nd(X)
        X = validate_data(self, X, dtype=[np.float32, np.float64])
        n_features = X.shape[1]
        if self.input_shape is not None:
            shape = tuple(int(s) for s in self.input_shape)
            if int(np.prod(shape)) != n_features:
                raise ValueError(
                    f"input_shape={shape} holds {int(np.prod(shape))} values but X has "
                    f"{n_features} features per row."
                )
        else:
            shape = nd_shape or (n_features,)
        self.input_shape_ = shape
        return X

    def _validate_predict_input(self, X):
        check_is_fitted(self)
        X, _ = _flatten_nd(X)
        return validate_data(self, X, dtype=[np.float32, np.float64], reset=False)

    # -- tensors ------------------------------------------------------------
    def _to_tensor(self, X):
        """Rows of ``X`` as a float32 tensor shaped ``(n, *input_shape_)`` on ``device_`` (the one cast)."""
        # Contiguous: torch rejects numpy arrays with negative strides (e.g. X[::-1]).
        X = np.ascontiguousarray(X)
        if not X.flags.writeable:
            # Read-only (e.g. joblib memmaps under n_jobs): torch warns on sharing such memory.
            X = X.copy()
        x = torch.as_tensor(X, dtype=torch.float32)
        return x.reshape((x.shape[0],) + tuple(self.input_shape_)).to(self.device_)

    def _iter_batches(self, X):
        for start in range(0, X.shape[0], self.batch_size):
            yield self._to_tensor(X[start : start + self.batch_size])

    def _batched(self, fn, X):
        """Apply ``fn`` (tensor batch → tensor) to ``X`` in batches under inference mode; numpy float64.

        Each batch is zero-padded to a multiple of 8 rows: CPU matrix kernels treat
        remainder rows differently, so without padding a row's float32 score would
        depend on how many rows were scored with it. Results go straight into one
        preallocated array: keeping a list of small per-batch arrays interleaved with the
        batches' large temporaries fragments the heap, which then never shrinks (measured:
        hundreds of MB over 1e6 rows).
        """
        if X.shape[0] == 0:
            raise ValueError("X has no rows.")
        out = None
        with torch.inference_mode():
            for start, x in zip(range(0, X.shape[0], self.batch_size), self._iter_batches(X)):
                n_rows = x.shape[0]
                n_padded = -(-n_rows // _ROW_BLOCK) * _ROW_BLOCK
                if n_padded > n_rows:
                    x = torch.cat([x, x.new_zeros((n_padded - n_rows,) + tuple(x.shape[1:]))])
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
        state = {key: encode_modules(value) for key, value in state.items()}
        state["_skadv_version"] = __version__
        return state

    def __setstate__(self, state):
        state = dict(state)
        saved_version = state.pop("_skadv_version", None)
        if saved_version != __version__:
            warnings.warn(
                f"Loading {type(self).__name__} saved with skadv {saved_version} into skadv "
                f"{__version__}; this might lead to breaking code or invalid results.",
                InconsistentVersionWarning,
            )
        state = {key: decode_modules(value) for key, value in state.items()}
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


class BaseDetector(OffsetOutlierMixin, TorchEstimatorMixin, BaseEstimator):
    """Base class of skadv's adversarial detectors (outlier-detector contract).

    Subclasses implement ``_fit_detector(X)`` (X validated, 2-D float) and
    ``_score_tensor(x)`` (x preprocessed, shaped ``(n, *input_shape_)``) returning the
    adversarial score per row, higher = more adversarial.
    """

    #: True when the score is randomized (attacks then average gradients over draws).
    _stochastic_score = False
    # _adaptive_logits returns the classifier's log-probabilities plus a "flagged" logit,
    # so a softmax of it is a confidence (attack traces and their displays rely on this).
    _adaptive_logits_are_log_proba = True

    _parameter_constraints = {
        **TorchEstimatorMixin._torch_parameter_constraints,
        "model_output": [StrOptions(set(MODEL_OUTPUTS))],
        "threshold": [numbers.Real, None],
        "contamination": [Interval(numbers.Real, 0, 0.5, closed="right")],
        "preprocess_fn": [callable, None],
        "epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "optimizer": [StrOptions({"adam", "adamw", "sgd", "rmsprop"}), type],
        "callbacks": [list, tuple, None],
        "verbose": ["verbose"],
    }

    # -- subclass hooks -----------------------------------------------------
    @abstractmethod
    def _fit_detector(self, X, seed):
        """Train the detector's networks on validated rows ``X``."""

    @abstractmethod
    def _score_tensor(self, x):
        """Adversarial score (n,) of a preprocessed batch; differentiable."""

    # -- fit ----------------------------------------------------------------
    def _fit(self, X, allow_sklearn_model=False):
        """Shared body of ``fit``: validation, setup, training, threshold."""
        X = self._validate_fit_input(X)
        seed = self._fit_seed()
        with torch_seed(seed, resolve_device(self.device, fitting=True)):
            self._setup_model(X, allow_sklearn=allow_sklearn_model)
            self._fit_detector(X, seed)
        self._set_threshold(self._adversarial_score_validated(X), None)
        return self

    def _set_threshold(self, train_scores, threshold_perc):
        if threshold_perc is not None:
            self.threshold_ = float(np.percentile(train_scores, threshold_perc))
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

    def _adaptive_logits(self, x):
        """Class scores plus a "flagged" column: argmax is the last column iff the row is flagged.

        Carlini & Wagner (2017): the detector becomes an extra class whose logit exceeds
        the classifier's best logit exactly when the adversarial score exceeds the threshold.
        """
        if self.model_ is None:
            raise ValueError(
                "Adaptive attacks need gradients through the protected model; a scikit-learn "
                "classifier has none. Protect a torch module or skorch net instead."
            )
        log_proba = self.model_(self._preprocess(x))
        score = self._torch_adversarial_score(x)
        flagged = log_proba.max(dim=1).values + (score - self.threshold_)
        return torch.cat([log_proba, flagged[:, None]], dim=1)

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

    def infer_threshold(self, X, threshold_perc=95):
        """Set ``threshold_`` so that ``threshold_perc`` percent of clean ``X`` is accepted.

        ``threshold_`` becomes the ``threshold_perc`` percentile of the adversarial scores
        of ``X`` and ``offset_`` its negative, so :meth:`predict` flags (-1) the rows whose
        adversarial score exceeds ``threshold_``. ``infer_threshold(X, 100 * (1 - c))``
        equals fitting with ``contamination=c`` on ``X``. Every skadv detector, DNR
        included, takes the same argument with the same meaning.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Clean data, ideally held out from training.
        threshold_perc : float in [0, 100], default=95
            Share of ``X`` to accept as normal, in percent (95 flags 5 %). A value in
            (0, 1] warns: it is read as a percent, not a fraction.

        Returns
        -------
        self : object
        """
        check_threshold_perc(threshold_perc)
        self._set_threshold(self.adversarial_score(X), threshold_perc)
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

    # -- training through skorch --------------------------------------------
    def _make_net(self, module, seed, net_cls=None, **kwargs):
        """A skorch net configured from the estimator's training parameters."""
        from skorch import NeuralNet
        from skorch.callbacks import ProgressBar

        callbacks = copy.deepcopy(list(self.callbacks or []))
        if self.verbose:
            callbacks.append(("progress_bar", ProgressBar()))
        return (net_cls or NeuralNet)(
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

    def _preprocessed_array(self, X):
        """Training rows after ``preprocess_fn``, as one float32 array in model shape."""
        with torch.inference_mode():
            parts = [self._preprocess(x).cpu() for x in self._iter_batches(X)]
        return torch.cat(parts).numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class TensorBatches:
    """skorch training iterator that slices whole batches out of in-memory tensors.

    skorch's default ``DataLoader`` fetches rows one by one and collates them, which costs
    more than a training step of the small networks detectors train. Same contract:
    seeded shuffling through ``generator``, last (short) batch kept, ``batch_size=-1``
    for one batch.
    """

    def __init__(self, dataset, batch_size=128, shuffle=False, generator=None):
        self.X = torch.as_tensor(dataset.X)
        y = getattr(dataset, "y", None)
        self.y = None if y is None else torch.as_tensor(y)
        self.batch_size = len(self.X) if batch_size == -1 else batch_size
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self):
        return -(-len(self.X) // self.batch_size)

    def __iter__(self):
        if self.shuffle:
            batches = torch.randperm(len(self.X), generator=self.generator).split(self.batch_size)
        else:
            batches = (slice(i, i + self.batch_size) for i in range(0, len(self.X), self.batch_size))
        for rows in batches:
            yield self.X[rows], None if self.y is None else self.y[rows]


class NetWithFrozenModel:
    """Mixin for skorch nets that carry the frozen classifier next to the trained module.

    The classifier is created in ``initialize_module`` as ``frozen_model_`` (so skorch
    moves it with the net), stays in eval mode, and is never given to the optimizer.
    """

    def __init__(self, *args, frozen_model, **kwargs):
        # skorch inspects module-valued attributes in __init__: set ours first.
        self.frozen_model = frozen_model
        super().__init__(*args, **kwargs)

    def initialize_module(self):
        super().initialize_module()
        self.frozen_model_ = self.frozen_model.to(self.device)
        self._training_mode = None
        return self

    def _set_training(self, training=True):
        # skorch calls this on every batch; walking both module trees each time costs a
        # noticeable share of a small network's step, so only act on a change of mode.
        if getattr(self, "_training_mode", None) == training:
            return
        super()._set_training(training)
        self.frozen_model_.eval()
        self._training_mode = training

    def get_all_learnable_params(self):
        yield from self.module_.named_parameters()
