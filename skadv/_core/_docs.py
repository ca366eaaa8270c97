"""Docstring blocks written once and substituted into many docstrings.

:func:`docstring_filler` makes the decorator; the attacks fill their shared parameters
with one (``skadv.attacks._docs``), the detectors with :func:`fill_detector_doc`, other
torch estimators with :func:`fill_torch_estimator_doc`.
"""

import inspect
import re

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def docstring_filler(**blocks):
    """A class decorator replacing each ``%(name)s`` in the class docstring by ``blocks[name]``.

    A block is a string, or a callable taking the class and returning one (for text that
    depends on the class, such as its defaults). A placeholder without a block raises,
    so that no docstring ships with one left in.
    """

    def fill_doc(cls):
        def block(match):
            name = match.group(1)
            if name not in blocks:
                raise KeyError(f"{cls.__qualname__}'s docstring names an unknown block %({name})s.")
            text = blocks[name]
            return text(cls) if callable(text) else text

        cls.__doc__ = _PLACEHOLDER.sub(block, cls.__doc__)
        return cls

    return fill_doc


# ----------------------------------------------------------------------------- detectors

_MODEL_NEEDING_GRADIENTS = """\
    model : nn.Module or fitted skorch NeuralNetClassifier
        The classifier to protect; the detector needs gradients through it, so a
        scikit-learn classifier is not accepted. It is copied, never modified. Wrap a
        skorch net in ``sklearn.frozen.FrozenEstimator`` to keep it fitted through
        ``clone()``."""

_MODEL_ANY_CLASSIFIER = """\
    model : nn.Module, fitted skorch NeuralNetClassifier or fitted sklearn classifier
        The classifier to protect. The detector needs no gradient through it, so any
        fitted classifier with ``predict_proba`` works (a scikit-learn one gives
        adaptive attacks no gradients). It is copied, never modified. Wrap a skorch net
        in ``sklearn.frozen.FrozenEstimator`` to keep it fitted through ``clone()``."""

_DETECTOR_PARAMS = """\
    model_output : {{'auto', 'logits', 'proba', 'log_proba'}}, default='auto'
        What a torch ``model`` returns. 'auto' decides once, at ``fit``: for a module,
        from its output on the first training rows (rows of non-negative values summing
        to 1 are probabilities, anything else logits); for a skorch net, from its
        criterion (probabilities under ``NLLLoss``, skorch's default, logits otherwise).
    threshold : float, default=None
        Explicit threshold on the adversarial score; overrides ``contamination``.
    contamination : float in (0, 0.5], default={contamination}
        Share of rows flagged; sets ``threshold_`` and ``offset_``. Without
        ``validation_fraction`` this threshold is in-sample: the detector has fitted
        those very rows, so it flags more than this share of new clean rows. For
        evaluation or deployment, set ``validation_fraction`` or fix the threshold with
        :meth:`infer_threshold` on held-out clean rows.
    validation_fraction : float in (0, 1), default={validation_fraction}
        Share of the rows given to ``fit`` held out from training to set the threshold:
        ``fit`` trains on the other rows and sets ``threshold_`` from the held-out rows
        at the ``contamination`` rate, exactly as :meth:`infer_threshold` with
        ``threshold_perc=100 * (1 - contamination)`` on them would. The held-out rows
        are the test rows of ``sklearn.model_selection.train_test_split(X,
        test_size=validation_fraction, random_state=random_state)``. The fitted
        detector (e.g. ``GridSearchCV(...).best_estimator_``) then carries an
        out-of-sample threshold. None trains on all rows. Not combined with
        ``threshold``."""

_TRAINING_PARAMS = """\
    epochs : int, default={epochs}
        Passes over the training rows.
    batch_size : int, default={batch_size}
        Rows per training step (scoring batches are set by ``inference_batch_size``).
    lr : float, default={lr}
        Learning rate.
    optimizer : {{'adam', 'adamw', 'sgd', 'rmsprop'}} or torch optimizer class, default='adam'
        Named 'adam', 'adamw' and 'sgd' run torch's fused implementation (``fused=True``);
        a class is used with its own defaults.
    callbacks : list of skorch callbacks, default=None
        Extra skorch callbacks (copied before use), e.g. ``EarlyStopping`` on
        ``train_loss``.
    verbose : bool or int, default=False
        Print skorch's epoch table and a progress bar."""

_INFERENCE_BATCH_SIZE = """\
    inference_batch_size : int, default=None
        The most rows scored at once, apart from the training ``batch_size``. A scoring
        batch holds at most about 16 MiB of float32-sized values (each row counted with
        the copies and intermediate values it expands into while scored), so scoring
        memory stays bounded however large this is. None takes as many rows as that
        allows; a detector on a CPU fills a cache-sized 2 MiB instead, where its small
        networks score fastest, or takes 64 rows (within the 16 MiB) when its networks
        convolve image rows."""

_INPUT_SHAPE_AND_DEVICE = """\
    input_shape : tuple of int, default=None
        Shape of one row as the networks expect it (e.g. ``(1, 8, 8)``). None uses rows
        as they are (or the trailing shape of an N-D ``X``).
    device : str, default='cpu'
        'cpu', 'cuda', 'cuda:N' or 'auto'."""

_INPUT_PARAMS = _INFERENCE_BATCH_SIZE + """
    preprocess_fn : callable, default=None
        Tensor → tensor function applied to every batch before the detector's networks
        and the classifier.
""" + _INPUT_SHAPE_AND_DEVICE + """
    random_state : int, RandomState instance or None, default=None
        Seeds training and any random draws of the score: equal seeds give
        bit-identical detectors and scores."""

_MEMORY_FORMAT = """\
    memory_format : {'auto', 'channels_last', 'contiguous'}, default='auto'
        Memory layout of the fitted networks' convolution weights and of the image
        batches they score (training is unaffected). 'channels_last' is
        ``torch.channels_last`` (NHWC), where oneDNN's CPU convolutions, transposed
        convolutions and pooling run faster (~1.4x less CPU time on alibi-detect's
        convolutional AdversarialAE example); scores move by float32 rounding (~1e-6
        relative). 'auto' uses it when rows are images ``(C, H, W)``, a network convolves
        them and a probe at ``fit`` finds the same scores as channels-first (a network
        calling ``h.view(n, -1)`` on a convolution's output does not: it keeps
        'contiguous'). 'contiguous' keeps channels-first scoring. Resolved at ``fit``
        into ``memory_format_``; 'channels_last' raises when the probe fails."""

_MEMORY_FORMAT_ATTRIBUTE = """\
    memory_format_ : {'channels_last', 'contiguous'}
        Memory layout of the image batches scored (``memory_format`` resolved at ``fit``)."""

_DETECTOR_ATTRIBUTES = """\
    threshold_ : float
        Rows whose adversarial score exceeds it are flagged.
    offset_ : float
        ``-threshold_``: ``decision_function = score_samples - offset_``.
    input_shape_ : tuple of int
        Shape of one row as the models see it.
    n_features_in_ : int
        Number of features seen during ``fit``.
    device_ : str
        The device the detector runs on."""

_MODEL_ATTRIBUTES_ANY_CLASSIFIER = """\
    model_ : ProtectedModel or None
        Frozen copy of a torch classifier returning log-probabilities.
    sklearn_model_ : estimator or None
        Copy of a scikit-learn classifier."""

_MODEL_ATTRIBUTES_TORCH = """\
    model_ : ProtectedModel
        Frozen copy of the classifier returning log-probabilities."""

_TRAINING_ATTRIBUTES = """\
    history_ : list of dict
        skorch's training history, one dict per epoch."""


def _defaults(cls):
    return {
        name: parameter.default
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def _with_defaults(template):
    """A block whose ``{name}`` fields are the class's ``__init__`` defaults (no drift)."""
    return lambda cls: template.format(**{name: f"{value:g}" if isinstance(value, float) else value
                                          for name, value in _defaults(cls).items()})


def _accepts_sklearn_model(cls):
    """Whether ``cls`` may protect a scikit-learn classifier: its class-level flag, or a
    property of it (a scikit-learn classifier is accepted in some settings)."""
    flag = inspect.getattr_static(cls, "_accepts_sklearn_model", False)
    return isinstance(flag, property) or bool(flag)


#: Decorator filling a detector's docstring: ``%(model)s`` and ``%(model_attributes)s``
#: (by the class's ``_accepts_sklearn_model``), ``%(detector_params)s``,
#: ``%(training_params)s``, ``%(input_params)s``, ``%(detector_attributes)s``,
#: ``%(training_attributes)s``, ``%(memory_format)s``, ``%(memory_format_attribute)s``.
fill_detector_doc = docstring_filler(
    model=lambda cls: _MODEL_ANY_CLASSIFIER if _accepts_sklearn_model(cls) else _MODEL_NEEDING_GRADIENTS,
    model_attributes=lambda cls: (
        _MODEL_ATTRIBUTES_ANY_CLASSIFIER if _accepts_sklearn_model(cls) else _MODEL_ATTRIBUTES_TORCH
    ),
    detector_params=_with_defaults(_DETECTOR_PARAMS),
    training_params=_with_defaults(_TRAINING_PARAMS),
    input_params=_INPUT_PARAMS,
    detector_attributes=_DETECTOR_ATTRIBUTES,
    training_attributes=_TRAINING_ATTRIBUTES,
    memory_format=_MEMORY_FORMAT,
    memory_format_attribute=_MEMORY_FORMAT_ATTRIBUTE,
)

#: Decorator filling ``%(inference_batch_size)s`` and ``%(input_shape_and_device)s`` in the
#: docstring of any torch estimator.
fill_torch_estimator_doc = docstring_filler(
    inference_batch_size=_INFERENCE_BATCH_SIZE, input_shape_and_device=_INPUT_SHAPE_AND_DEVICE
)
