"""One adapter for the classifier that detectors protect and attacks target.

:func:`adapt_model` turns what a user passes as a model into a private, frozen torch view
(or, where no gradient is needed, a black box with ``predict_proba``);
:meth:`ModelAdapter.check_output` then probes it once on real input and rejects outputs
that cannot be class scores. Detectors and attacks both go through it, so a model is
understood the same way everywhere.
"""

import copy

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted
from torch import nn

__all__ = ["ModelAdapter", "ProtectedModel", "adapt_model"]

# Smallest probability before a log, so a saturated softmax gives a large finite score.
_TINY_PROBA = 1e-12
# Floor of log-probabilities: log 0 = -inf would turn 0 * log 0 terms into NaN downstream.
_LOG_PROBA_FLOOR = -1e4
# Tolerance of the "rows sum to 1" test that tells probabilities from logits.
_PROBA_SUM_ATOL = 1e-4

MODEL_OUTPUTS = ("auto", "logits", "proba", "log_proba")


class ProtectedModel(nn.Module):
    """Frozen copy of the protected classifier that returns log-probabilities.

    Parameters
    ----------
    net : nn.Module
        The classifier (already a private copy).
    output : {"logits", "proba", "log_proba"}
        What ``net`` returns.

    ``forward`` returns finite float64 log-probabilities; :meth:`scores` returns scores
    whose softmax is the model's prediction, in the network's own dtype.
    """

    def __init__(self, net, output="logits"):
        super().__init__()
        self.net = net
        self.output = output

    def forward(self, x):
        # float64 from here on: float32 SIMD log/exp kernels round a row differently
        # depending on its position in the batch; the networks themselves stay float32.
        out = self.net(x).double()
        if self.output == "logits":
            return torch.log_softmax(out, dim=1)
        if self.output == "proba":
            # Renormalise so slightly off probabilities still give a distribution.
            out = out.clamp_min(_TINY_PROBA)
            return torch.log(out / out.sum(dim=1, keepdim=True))
        return out.clamp_min(_LOG_PROBA_FLOOR)

    def scores(self, x):
        """Logit-like scores of a batch: the logits, or the log of the probabilities.

        Their differences are the differences of the model's logits, which is all that
        margin and cross-entropy objectives of attacks need.
        """
        out = self.net(x)
        if self.output == "proba":
            return torch.log(out.clamp_min(_TINY_PROBA))
        return out


def _is_skorch_net(obj):
    try:
        from skorch import NeuralNet
    except ImportError:  # pragma: no cover - skorch is a dependency
        return False
    return isinstance(obj, NeuralNet)


def _unwrap_frozen(model):
    # sklearn.frozen.FrozenEstimator keeps clone() from resetting a fitted skorch net.
    while isinstance(model, FrozenEstimator):
        model = model.estimator
    return model


class ModelAdapter:
    """A user's classifier seen one way: a frozen torch module or a black box.

    Built by :func:`adapt_model`; call :meth:`check_output` once on real input (at fit)
    before using it.

    Attributes
    ----------
    module : ProtectedModel or None
        Private frozen copy (eval mode, no gradients) of the torch network.
    black_box : estimator or None
        Private copy of a fitted scikit-learn classifier (or Pipeline) with
        ``predict_proba``, used where no gradient is needed.
    classes : ndarray or None
        The model's class labels when it knows them (skorch or scikit-learn
        ``classes_``); the output width must match them.
    n_classes : int or None
        Width of the output, known after :meth:`check_output`.
    """

    def __init__(self, module=None, black_box=None, classes=None, auto_output=False):
        self.module = module
        self.black_box = black_box
        self.classes = None if classes is None else np.asarray(classes)
        self.n_classes = None
        self._auto_output = auto_output

    def to(self, device):
        """Move the torch module to ``device``; returns self."""
        if self.module is not None:
            self.module.to(device)
        return self

    def _raw_output(self, x):
        if self.module is not None:
            with torch.no_grad():
                return self.module.net(x)
        proba = self.black_box.predict_proba(x.detach().reshape(x.shape[0], -1).cpu().numpy())
        return torch.as_tensor(np.asarray(proba, dtype=np.float64))

    def check_output(self, x):
        """Probe the model once on the model-ready batch ``x`` and check its output.

        Rows must come out as ``(n, n_classes)`` scores with ``n_classes >= 2`` (and
        equal to the number of known classes). Under ``model_output='auto'`` a torch
        module whose outputs are non-negative and sum to 1 per row is read as returning
        probabilities, anything else as logits. Declared probabilities must be
        non-negative and declared log-probabilities non-positive.

        Returns
        -------
        n_classes : int

        Raises
        ------
        ValueError
            Naming the shape or values found and what to do.
        """
        shape = tuple(x.shape[1:])
        try:
            out = self._raw_output(x)
        except RuntimeError as exc:
            raise ValueError(
                f"The model cannot process inputs shaped {shape}: {exc}. Set input_shape to the shape of "
                "one input as the model expects it (e.g. (1, 28, 28) for a channels-first image)."
            ) from exc
        if not isinstance(out, torch.Tensor):
            if isinstance(out, (tuple, list)):
                what = f"a {type(out).__name__} of {len(out)} items"
            else:
                what = type(out).__name__
            raise ValueError(  # noqa: TRY004 - a wrong model output is a value problem, as in scikit-learn
                f"The model returns {what}; it must return one tensor of class scores shaped "
                "(n_samples, n_classes). Wrap it in a module that returns only the scores."
            )
        if out.ndim != 2 or out.shape[1] < 2:
            raise ValueError(
                f"The model must return class scores shaped (n_samples, n_classes) with n_classes >= 2; it "
                f"returns shape {tuple(out.shape)} for {x.shape[0]} rows. A binary classifier with one output "
                "must return two columns (e.g. torch.cat([-z, z], dim=1) for a logit z)."
            )
        n_classes = int(out.shape[1])
        if self.classes is not None and n_classes != len(self.classes):
            raise ValueError(
                f"The model returns {n_classes} columns (shape {tuple(out.shape)}) but knows "
                f"{len(self.classes)} classes {self.classes.tolist()}."
            )
        if self.module is not None:
            out = out.detach().double()
            non_negative = bool((out >= 0).all())
            if self._auto_output:
                sums_to_one = bool(torch.allclose(out.sum(dim=1), out.new_ones(out.shape[0]), atol=_PROBA_SUM_ATOL))
                self.module.output = "proba" if non_negative and sums_to_one else "logits"
            elif self.module.output == "proba" and not non_negative:
                raise ValueError(
                    f"model_output='proba' but the model returns negative values (min {out.min().item():.4g}); "
                    "pass model_output='logits' for logits."
                )
            elif self.module.output == "log_proba" and bool((out > 1e-6).any()):
                raise ValueError(
                    f"model_output='log_proba' but the model returns positive values (max {out.max().item():.4g}); "
                    "pass model_output='logits' or 'proba'."
                )
            # After the probe: it materialises lazy layers, whose parameters must be frozen too.
            self.module.requires_grad_(False)
        self.n_classes = n_classes
        return n_classes


def adapt_model(model, *, model_output="auto", need_gradients=True):
    """Adapt a user's classifier to a :class:`ModelAdapter`, never modifying it.

    Parameters
    ----------
    model : object
        One of:

        - a torch ``nn.Module`` returning class scores (logits by default);
        - a fitted skorch ``NeuralNetClassifier`` (its module returns probabilities
          under skorch's default ``NLLLoss``, logits under ``CrossEntropyLoss``);
        - ``sklearn.frozen.FrozenEstimator`` of either (unwrapped; it keeps a
          fitted net fitted through ``clone()``);
        - where ``need_gradients`` is False: any fitted scikit-learn classifier with
          ``predict_proba``, a ``Pipeline`` included (used as a black box).
    model_output : {"auto", "logits", "proba", "log_proba"}, default="auto"
        What a torch module returns. "auto": decided from the skorch criterion, or
        from the output itself at :meth:`ModelAdapter.check_output` (non-negative rows
        summing to 1 are probabilities, anything else logits).
    need_gradients : bool, default=True
        Whether the caller differentiates through the model. A Pipeline whose steps
        transform X outside torch cannot be differentiated.

    Returns
    -------
    adapter : ModelAdapter
        With a frozen private copy of the network, or of the black box.
    """
    model = _unwrap_frozen(model)
    kinds = "a torch nn.Module returning class scores, a fitted skorch NeuralNetClassifier" + (
        "" if need_gradients else ", or a fitted scikit-learn classifier with predict_proba"
    )
    if model is None:
        raise ValueError(f"model=None: pass the classifier to protect ({kinds}).")
    if model_output not in MODEL_OUTPUTS:
        raise ValueError(f"model_output must be one of {MODEL_OUTPUTS}; got {model_output!r}.")
    if isinstance(model, Pipeline) and need_gradients:
        last = _unwrap_frozen(model.steps[-1][1])
        what = "a skorch net" if _is_skorch_net(last) else type(last).__name__
        raise ValueError(
            f"The model is a Pipeline ending in {what}: its steps before it run in numpy, so no gradient "
            "reaches the input. Pass the network itself and move the preprocessing (e.g. the scaling) into "
            "the torch module (nn.Sequential(preprocessing_module, net)) or into preprocess_fn."
        )
    if isinstance(model, nn.Module):
        module = copy.deepcopy(model)
        output = model_output
        classes = None
    elif _is_skorch_net(model):
        if not getattr(model, "initialized_", False) or not hasattr(model, "module_"):
            raise ValueError(
                "The skorch net passed as model is not fitted. Fit it first; inside GridSearchCV wrap it "
                "as sklearn.frozen.FrozenEstimator(net) so clone() keeps it fitted."
            )
        module = copy.deepcopy(model.module_)
        output = model_output
        if output == "auto":
            # NeuralNetClassifier applies log() itself under NLLLoss: the module returns probabilities.
            output = "proba" if isinstance(getattr(model, "criterion_", None), nn.NLLLoss) else "logits"
        classes = getattr(model, "classes_", None)
    elif not need_gradients and hasattr(model, "predict_proba"):
        check_is_fitted(model)
        return ModelAdapter(black_box=copy.deepcopy(model), classes=getattr(model, "classes_", None))
    else:
        no_gradient = need_gradients and hasattr(model, "predict_proba")
        raise ValueError(
            f"Unsupported model of type {type(model).__name__}: expected {kinds}"
            + ("; it has no gradient, and one is needed here." if no_gradient else ".")
        )
    protected = ProtectedModel(module, "logits" if output == "auto" else output).eval()
    return ModelAdapter(module=protected, classes=classes, auto_output=output == "auto")
