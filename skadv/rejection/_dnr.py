"""Deep Neural Rejection: RBF SVMs on hidden layers, an RBF SVM combiner, and a reject option."""

import numbers
import sys

import numpy as np
import torch
from joblib import Parallel, parallel_config
from sklearn.base import ClassifierMixin, clone
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import KFold, check_cv
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._core import (
    AttackSurface,
    BaseComposition,
    HasMethods,
    StrOptions,
    check_y,
    default_layers,
    fill_torch_estimator_doc,
    fit_context,
    forward_capturing,
    probe_layers,
    resolve_device,
    resolve_layers,
    torch_seed,
    warn_at_caller,
)
from ..base import TorchEstimatorMixin, check_threshold_options, check_threshold_perc, fit_atomically
from ._folds import FoldFittingMixin, _LayerFolds, _per_class
from ._kernels import kernel_machine_from
from ._one_vs_all import OneVsAllSVC

#: Label that :meth:`DeepNeuralRejection.predict` gives rejected rows.
REJECT_LABEL = -1


def _accepting_score(scores, threshold_perc):
    """The class score above which ``threshold_perc`` percent of ``scores`` lies."""
    return float(np.percentile(scores, 100.0 - threshold_perc))


def _progress(verbose, desc, **kwargs):
    """A tqdm bar on stderr, disabled (silent) unless ``verbose``."""
    from tqdm import tqdm

    return tqdm(desc=desc, disable=not verbose, file=sys.stderr, leave=True, **kwargs)


def _totalled(tasks, progress):
    """Yield ``tasks``; once they are all made, set their number as ``progress``'s total."""
    count = 0
    for task in tasks:
        count += 1
        yield task
    progress.total = count
    progress.refresh()


def _counted(results, progress):
    """Yield ``results``, advancing ``progress`` by one for each."""
    for result in results:
        progress.update(1)
        yield result


def _default_layer_clf():
    return OneVsAllSVC()


def _default_combiner():
    return OneVsAllSVC(C=0.1, gamma=1.0)


def _rows_of(ds):
    """The rows of secml-style data: an array, a dataset with ``.X``, or an ``(X, y)`` pair."""
    if isinstance(ds, tuple) and len(ds) == 2:
        return ds[0]
    rows = getattr(ds, "X", ds)
    return rows.tondarray() if hasattr(rows, "tondarray") else rows


# ----------------------------------------------------------------------------- layer capture


def capture_layers(net, names, x, dtype=torch.float64):
    """Flattened outputs ``(n, d_l)`` of the submodules of ``net`` named in ``names`` for one pass of ``x``.

    Each output is a copy in ``dtype`` (float64, what the SVMs take; float32 holds a
    float32 network's values exactly at half the cost). The forward pass stops once
    every layer has produced its output (thread-safe; see :mod:`skadv._core._layers`
    for the conventions).
    """

    def flat_copy(output):
        return output.reshape(output.shape[0], -1).to(dtype, copy=True)

    return forward_capturing(net, names, x, transform=flat_copy, need_output=False)[1]


# ----------------------------------------------------------------------------- the estimator


@fill_torch_estimator_doc
class DeepNeuralRejection(ClassifierMixin, TorchEstimatorMixin, BaseComposition):
    """Deep Neural Rejection: a classifier that rejects inputs far from what its layers know.

    The protected network's chosen hidden layers are read with forward hooks. On each
    layer's (flattened) output a one-vs-all RBF SVM is trained; a combiner, again a
    one-vs-all RBF SVM, is trained on the stacked per-class scores of the layer SVMs,
    computed out-of-fold so that it learns how the layers behave on unseen data; the
    layer SVMs are then refitted on all data. The combiner's per-class scores are raw
    SVM decision values. An input is *rejected* (label -1) when its highest class score
    is strictly below ``threshold``. RBF scores decay to the intercepts far from the
    training data, so adversarial and out-of-distribution inputs get low scores
    everywhere (Sotgiu et al., 2020, "Deep neural rejection against adversarial
    examples").

    The steps follow secml's ``CClassifierDNR`` and give the decisions of the same steps
    assembled from scikit-learn's ``OneVsRestClassifier(SVC())``. After ``fit`` the layer SVMs and
    the combiner are evaluated as one batched torch computation (per layer, one kernel
    matrix over the union of its support vectors and a coefficient matrix for the
    classes), which is fast and differentiable, so attacks run against DNR end to end.

    Parameters
    ----------
    model : nn.Module or fitted skorch NeuralNetClassifier
        The trained network. Its hidden layers are needed, so it must be torch. It is
        copied, never modified. Wrap a skorch net in ``sklearn.frozen.FrozenEstimator``
        to keep it fitted through ``clone()``.
    layers : list of str or int, or of (str, estimator) pairs, default=None
        Layers to read, by their names in ``model.named_modules()`` (e.g.
        ``"features.relu2"``) or their int positions in that list without its root entry
        (``i`` is ``model[i]`` for an ``nn.Sequential``). A layer the forward pass calls
        several times is read at its first call; only modules the forward pass calls can
        be read (an activation applied as ``torch.relu(x)`` cannot):
        :func:`skadv.utils.hookable_layers` lists them with their widths. A plain entry
        uses ``layer_clf``; a ``(name, estimator)`` pair gives that layer its own
        classifier, reachable through ``set_params`` as in a Pipeline:
        ``set_params(**{"features.relu2__C": 10})``. None reads the last three hidden
        layers before the output, as secml's tutorial reads relu2 to relu4: ``fit`` runs
        the network on its first rows, lists the submodules in the order their forward
        calls finish, drops each one whose output equals the one listed before it
        (``Dropout`` in eval mode, ``Flatten``, a container returning its last child's
        output), drops the trailing ones as wide as the network's output (the output
        layer, a softmax after it), and reads the last three of the rest
        (``layer_names_`` says which).
    layer_clf : classifier with decision_function, default=None
        Classifier of the layers given by name. None means ``OneVsAllSVC()`` (C=1,
        gamma='scale'). Use one-vs-all RBF SVMs: their scores abate away from the data,
        which is what makes rejection work. For training sets beyond about 10 000 rows
        use :class:`NystroemOneVsAll` (layers and combiner): its fit is linear in the
        number of rows, its scores abate likewise, and a layer it classifies streams
        into its features batch by batch (the layer's outputs are never held for all
        rows). Give wide layers more landmarks: measured there, 2000 on the widest
        layer and the combiner, 1000 on the others, match the exact DNR's clean accuracy
        with rejection and PGD AUROC at 2500 rows.
    combiner : classifier with decision_function, default=None
        Classifier of the stacked layer scores. None means ``OneVsAllSVC(C=0.1, gamma=1)``.
    threshold : float, default=None
        Rows whose highest class score is strictly below it are rejected (secml's
        convention: a threshold on the class score, higher = more normal). None rejects
        nothing. Read at prediction time, so :meth:`infer_threshold` (the detectors'
        call) or ``set_params(threshold=compute_threshold(...))`` (secml's) take effect
        without refitting.
    cv : int, cross-validation generator or iterable, default=None
        Folds of the out-of-fold layer scores that train the combiner. None means a
        shuffled 5-fold ``KFold`` seeded from ``random_state``; an int, a shuffled
        ``KFold`` with that many folds. The test folds must partition the rows.
    n_jobs : int, default=None
        Number of joblib jobs fitting the binary SVMs of all layers, folds and classes
        in parallel (threads by default; None means 1 unless in a
        ``joblib.parallel_config`` context). A layer's :class:`OneVsAllSVC` computes its
        training kernel once (BLAS on the CPU, torch on another ``device``) and every
        fold fits on slices of it. The fitted model does not depend on ``n_jobs``.
    kernel_dtype : {'float64', 'float32'}, default='float64'
        Precision of the layer SVMs' kernels at prediction (and in attacks). 'float64'
        equals scikit-learn's decision values to ~1e-10; 'float32' is about twice as
        fast on CPUs (the kernels are matrix products over thousands of features), with
        class-score errors measured around 1e-6 to 1e-5 on 28x28 CNN features: check that
        decisions do not change on your data before deploying it. Read at prediction
        time, so ``set_params`` switches it without refitting; the combiner always runs
        in float64.
    batch_size : int, default=128
        The most rows per forward pass while fitting (reading the layers of the training
        rows), also capped at about 16 MiB of float32-sized input values.
    verbose : bool or int, default=False
        Show ``fit``'s progress on stderr (tqdm): the layers read, then the classifier
        fits of every layer and fold, then the combiner. Silent by default.
%(inference_batch_size)s
%(input_shape_and_device)s
    random_state : int, RandomState instance or None, default=None
        Seeds the default folds (and lazy layers of the model copy).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    threshold_ : float
        The threshold in effect (``-inf`` when ``threshold`` is None).
    layer_names_ : list of str
        Dotted names of the layers read, in the order of ``layers``.
    layer_estimators_ : list of estimators
        Layer classifiers refitted on all data, in ``layer_names_`` order.
    combiner_ : estimator
        Combiner fitted on the out-of-fold layer scores.
    kernel_net_ : nn.Module
        Torch evaluation of the layer SVMs and the combiner (``layers`` holds an
        :class:`~skadv.rejection._kernels.RBFKernelMachine` per convertible layer classifier
        keyed by its index, ``combiner`` one for the combiner; others run through their
        ``decision_function`` without gradients).
    model_ : ProtectedModel
        Frozen copy of the network.
    input_shape_ : tuple of int
    n_features_in_ : int
    device_ : str

    See Also
    --------
    OneVsAllSVC : the default layer classifier and combiner.
    NystroemOneVsAll : the approximate one for large training sets.
    DNRDetector : the outlier-detector view (accepted +1, rejected -1).

    Notes
    -----
    ``decision_function`` returns ``n_classes + 1`` columns, the last the (constant)
    threshold, so its argmax is the last column exactly for rejected rows (secml's
    convention). scikit-learn's common checks expect ``n_classes`` columns (a single one
    for two classes); these two checks are the documented exceptions. There is no
    ``predict_proba``: the scores are uncalibrated SVM decision values.

    A fitted estimator can serve concurrent threads: the hidden layers are read through
    hooks that only see the calling thread's batches, so concurrent calls give exactly
    the serial results. A ``fit`` that raises leaves the estimator as it was.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skorch import NeuralNetClassifier
    >>> from sklearn.datasets import load_digits
    >>> from skadv import DeepNeuralRejection
    >>> X, y = load_digits(return_X_y=True)
    >>> X = (X / 16.0).astype("float32")
    >>> _ = torch.manual_seed(0)
    >>> net = NeuralNetClassifier(
    ...     nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10)),
    ...     criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-2,
    ...     max_epochs=20, batch_size=64, train_split=None, verbose=0,
    ... ).fit(X[:500], y[:500])
    >>> dnr = DeepNeuralRejection(net, layers=["1", "3"], random_state=0).fit(X[:500], y[:500])
    >>> dnr.decision_function(X[500:503]).shape
    (3, 11)
    >>> dnr = dnr.infer_threshold(X[500:600], threshold_perc=90)  # accept 90 %, as every detector
    >>> int((dnr.predict(X[500:600]) == -1).sum())
    10
    >>> dnr = dnr.set_params(threshold=dnr.compute_threshold(X[500:600], 0.2))  # secml's: reject 20 %
    >>> int((dnr.predict(X[500:600]) == -1).sum())
    20
    """

    _parameter_constraints = {
        **TorchEstimatorMixin._torch_parameter_constraints,
        "layers": [list, tuple, None],
        "layer_clf": [HasMethods(["fit", "decision_function"]), None],
        "combiner": [HasMethods(["fit", "decision_function"]), None],
        "threshold": [numbers.Real, None],
        "cv": ["cv_object"],
        "n_jobs": [numbers.Integral, None],
        "kernel_dtype": [StrOptions({"float64", "float32"})],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model=None,
        *,
        layers=None,
        layer_clf=None,
        combiner=None,
        threshold=None,
        cv=None,
        n_jobs=None,
        kernel_dtype="float64",
        batch_size=128,
        verbose=False,
        inference_batch_size=None,
        input_shape=None,
        device="cpu",
        random_state=None,
    ):
        self.model = model
        self.layers = layers
        self.layer_clf = layer_clf
        self.combiner = combiner
        self.threshold = threshold
        self.cv = cv
        self.n_jobs = n_jobs
        self.kernel_dtype = kernel_dtype
        self.batch_size = batch_size
        self.verbose = verbose
        self.inference_batch_size = inference_batch_size
        self.input_shape = input_shape
        self.device = device
        self.random_state = random_state

    # -- parameters: per-layer estimators route like Pipeline steps -------------
    @property
    def _named_layer_classifiers(self):
        """The ``(name, estimator)`` entries of ``layers``, as a list (never raises: used by get_params)."""
        try:
            return [
                (entry[0], entry[1])
                for entry in self.layers
                if isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)
            ]
        except TypeError:
            return []

    @_named_layer_classifiers.setter
    def _named_layer_classifiers(self, pairs):
        # Written back into ``layers`` in place, its other entries and its type kept.
        replacements = dict(pairs)
        self.layers = type(self.layers)(
            (entry[0], replacements[entry[0]])
            if isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)
            else entry
            for entry in self.layers
        )

    def get_params(self, deep=True):
        """Parameters of this estimator and, with ``deep``, of its per-layer classifiers.

        Parameters
        ----------
        deep : bool, default=True
            Also return the parameters of contained estimators, with per-layer
            classifiers under their layer names (``"features.relu2__C"``).

        Returns
        -------
        params : dict
        """
        return self._get_params("_named_layer_classifiers", deep=deep)

    def set_params(self, **params):
        """Set parameters, including per-layer classifiers by layer name.

        ``set_params(**{"features.relu2": OneVsAllSVC(C=10)})`` replaces a layer's
        classifier and ``set_params(**{"features.relu2__C": 10})`` sets one of its
        parameters. This works for a layer given by name alone too (it uses
        ``layer_clf``): the entry becomes a ``(name, clone(layer_clf))`` pair, so the
        other layers keep ``layer_clf``. A layer whose classifier is shared (the same
        instance as ``layer_clf`` or as another layer's) gets its own clone before one of
        its parameters is set, so the setting reaches that layer only.

        Parameters
        ----------
        **params : dict

        Returns
        -------
        self : object
        """
        if "layers" in params:  # first, so that the names below are the new layers'
            self.layers = params.pop("layers")
        targeted = {key.split("__", 1)[0] for key in params}
        nested = {key.split("__", 1)[0] for key in params if "__" in key}
        if targeted & self._layer_entry_names():
            self.layers = self._with_own_classifiers(targeted, nested)
        return self._set_params("_named_layer_classifiers", **params)

    def _layer_entry_names(self):
        try:
            return {entry if isinstance(entry, str) else entry[0] for entry in self.layers
                    if isinstance(entry, str) or (isinstance(entry, (tuple, list)) and len(entry) == 2)}
        except TypeError:
            return set()

    def _with_own_classifiers(self, targeted, nested):
        """``layers`` with the targeted plain names as pairs and shared classifiers of ``nested`` layers cloned."""
        shared = self.layer_clf if self.layer_clf is not None else _default_layer_clf()
        counts = {}
        for entry in self.layers:
            if isinstance(entry, (tuple, list)) and len(entry) == 2 and entry[1] is not None:
                counts[id(entry[1])] = counts.get(id(entry[1]), 0) + 1

        def own(entry):
            if isinstance(entry, str):
                return (entry, clone(shared)) if entry in targeted else entry
            if isinstance(entry, (tuple, list)) and len(entry) == 2 and entry[0] in nested:
                name, estimator = entry
                if estimator is None or estimator is self.layer_clf or counts.get(id(estimator), 0) > 1:
                    return (name, clone(shared if estimator is None else estimator))
            return entry

        return type(self.layers)(own(entry) for entry in self.layers)

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("verbose", False)  # saved before the parameter existed

    def _layer_specs(self):
        """Validated ``[(name, unfitted estimator template)]``; None for the default layers (``layers=None``)."""
        if self.layers is None:
            return None
        if not self.layers:
            raise ValueError(
                "layers is empty: name at least one hidden layer of the model, e.g. layers=['features.relu2'] "
                "(skadv.utils.hookable_layers(model, X) lists them), or pass None for the last three."
            )
        shared = self.layer_clf if self.layer_clf is not None else _default_layer_clf()
        specs = []
        for entry in self.layers:
            if isinstance(entry, (str, numbers.Integral, np.integer)) and not isinstance(entry, bool):
                specs.append((entry, shared))
            elif isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str):
                estimator = entry[1] if entry[1] is not None else shared
                if not (hasattr(estimator, "fit") and hasattr(estimator, "decision_function")):
                    raise ValueError(
                        f"The classifier of layer {entry[0]!r} has no fit/decision_function: {estimator!r}."
                    )
                specs.append((entry[0], estimator))
            else:
                raise ValueError(
                    f"Each entry of layers must be a layer name or a (name, estimator) pair; got {entry!r}."
                )
        names = [name for name, _ in specs if isinstance(name, str)]
        own_params = set(self.get_params(deep=False))
        for name in names:
            if not name or "__" in name:
                raise ValueError(f"Layer names must be non-empty and contain no '__'; got {name!r}.")
            if name in own_params:
                raise ValueError(f"Layer name {name!r} conflicts with a parameter of {type(self).__name__}.")
        if len(set(names)) != len(names):
            raise ValueError(f"Layer names must be unique; got {names}.")
        return specs

    # -- fit ------------------------------------------------------------------
    @fit_context(prefer_skip_nested_validation=False)
    @fit_atomically
    def fit(self, X, y=None):
        """Fit the layer SVMs, the combiner on their out-of-fold scores, then refit the layers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows (the data the network was trained on, or similar clean data).
        y : array-like of shape (n_samples,)
            Class labels, required: DNR trains on them (None raises a ValueError).
            :class:`DNRDetector` fits without them, on the network's own predictions.

        Returns
        -------
        self : object
        """
        return self._fit(X, y)

    @fit_context(prefer_skip_nested_validation=False)
    @fit_atomically
    def fit_on_model_labels(self, X):
        """Fit as :meth:`fit` does, with the network's own predictions on ``X`` as the labels.

        What :class:`DNRDetector` does when fitted without labels: a detector learns
        from clean rows alone.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Clean training rows; the network must predict at least two classes on them.

        Returns
        -------
        self : object
        """
        return self._fit(X, None, labels_from_model=True)

    def _fit(self, X, y, labels_from_model=False):
        """``fit``; with ``labels_from_model``, ``y`` is ignored and the network's predictions
        on ``X`` are the labels."""
        X = self._validate_fit_input(X)
        if labels_from_model:
            y = None
        elif y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None: DNR trains its "
                "layer classifiers on class labels, so call fit(X, y). To fit on the network's own "
                "predictions instead, use DNRDetector(DeepNeuralRejection(...)).fit(X)."
            )
        else:
            y = check_y(y, estimator=self)
            if len(y) != X.shape[0]:
                raise ValueError(f"X has {X.shape[0]} rows but y has {len(y)} labels.")
            check_classification_targets(y)
        specs = self._layer_specs()
        seed = self._fit_seed()
        with torch_seed(seed, resolve_device(self.device, fitting=True)):
            adapter = self._setup_model(X)
        if specs is None:
            specs = self._default_layer_specs(X)
        self.layer_names_ = list(resolve_layers(self.model_.net, [name for name, _ in specs]))
        if labels_from_model:
            predicted = self._batched(self.model_, X).argmax(axis=1)
            y = predicted if adapter.classes is None else adapter.classes[predicted]
        self.classes_, y_encoded = np.unique(y, return_inverse=True)
        n_classes = len(self.classes_)
        if n_classes < 2:
            source = "the network's predictions on X contain" if labels_from_model else "the data contains"
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the data, but "
                f"{source} only 1 class: {self.classes_[0]!r}."
            )
        progress = _progress(self.verbose, f"{type(self).__name__}: reading layers", unit="row", total=X.shape[0])
        features = self._layer_features(X, progress, specs)
        progress.close()
        folds = self._folds(X, y_encoded, seed)

        layers = [
            _LayerFolds(template, layer_features, y_encoded, n_classes, folds, self.device_)
            for (_, template), layer_features in zip(specs, features)
        ]
        progress = _progress(self.verbose, f"{type(self).__name__}: fitting layers x folds", unit="fit")
        # Every task is queued as soon as it is made ("all"): the workers fit the first layer's
        # problems while this thread computes the next layer's kernel.
        results = Parallel(n_jobs=self.n_jobs, prefer="threads", return_as="generator", pre_dispatch="all")(
            _totalled((task for layer in layers for task in layer.tasks()), progress)
        )
        results = _counted(results, progress)
        self.layer_estimators_ = []
        out_of_fold = np.empty((X.shape[0], n_classes * len(specs)))
        incomplete_folds = False
        for index, layer in enumerate(layers):
            progress.set_postfix_str(f"layer {self.layer_names_[index]}", refresh=False)
            estimator, fold_scores, incomplete = layer.collect(results)
            self.layer_estimators_.append(estimator)
            for test, scores in fold_scores:
                out_of_fold[test, index * n_classes : (index + 1) * n_classes] = scores
            incomplete_folds |= incomplete
        if incomplete_folds:
            warn_at_caller(
                "Some training folds lack a class; its out-of-fold layer scores were set to -1. "
                "Use more data per class or a StratifiedKFold as cv.",
                UserWarning,
            )
        progress.set_postfix_str("combiner", refresh=True)
        combiner = self.combiner if self.combiner is not None else _default_combiner()
        with parallel_config(n_jobs=self.n_jobs):  # a combiner with n_jobs=None follows the DNR's
            self.combiner_ = clone(combiner).fit(out_of_fold, y_encoded)
        progress.close()
        self.kernel_net_ = self._build_kernel_net()
        return self

    def _default_layer_specs(self, X):
        """``[(name, layer_clf)]`` of the default layers, from one probe pass on the first rows of ``X``."""
        with torch.inference_mode():
            records, output = probe_layers(self.model_.net, self._to_tensor(X[:8]))
        names = default_layers(records, output)
        if not names:
            raise ValueError(
                f"layers=None found no hidden layer to read in {type(self.model_.net).__name__}: its forward "
                "pass calls no submodule before the output layer. Pass layers=[...] naming modules that "
                "skadv.utils.hookable_layers(model, X) lists."
            )
        shared = self.layer_clf if self.layer_clf is not None else _default_layer_clf()
        return [(name, shared) for name in names]

    def _layer_features(self, X, progress=None, specs=None):
        """Flattened outputs of every chosen layer (float32, as the network computes them).

        One batched forward pass; each batch is written straight into one array per layer
        (float32 holds the network's values exactly and halves the memory of float64).
        A layer whose classifier (in ``specs``) has a
        :meth:`~skadv.rejection.FoldFittingMixin.feature_stream` gets that stream instead,
        fed batch by batch (after one pass over the rows it needs first), so its raw
        outputs are never held for all rows. ``progress`` (a tqdm bar) advances by the
        rows of each batch.
        """
        features = [None] * len(self.layer_names_)
        if specs is not None:
            features = [
                template.feature_stream(X.shape[0], width, device=self.device_)
                if isinstance(template, FoldFittingMixin) else None
                for (_, template), width in zip(specs, self._layer_widths(X))
            ]
            streams = [stream for stream in features if stream is not None]
            if streams:
                first = np.unique(np.concatenate([stream.landmark_rows for stream in streams]))
                values = self._layer_features(X[first])
                for index, stream in enumerate(features):
                    if stream is not None:
                        stream.set_landmarks(values[index][np.searchsorted(first, stream.landmark_rows)])
        with torch.inference_mode():
            batch_size = min(self.batch_size, self._budget_rows())
            for start, x in zip(range(0, X.shape[0], batch_size), self._iter_batches(X, batch_size)):
                outputs = capture_layers(self.model_.net, self.layer_names_, x, torch.float32)
                for index, output in enumerate(outputs):
                    if features[index] is None:
                        features[index] = np.empty((X.shape[0], output.shape[1]), dtype=np.float32)
                    if isinstance(features[index], np.ndarray):
                        features[index][start : start + len(output)] = output.cpu().numpy()
                    else:
                        features[index].add(start, output)
                if progress is not None:
                    progress.update(len(x))
        return features

    def _layer_widths(self, X):
        """Flattened width of each chosen layer, from one probe row."""
        with torch.inference_mode():
            return [o.shape[1] for o in capture_layers(self.model_.net, self.layer_names_, self._to_tensor(X[:1]))]

    def _folds(self, X, y, seed):
        if self.cv is None or isinstance(self.cv, numbers.Integral):
            cv = KFold(n_splits=5 if self.cv is None else int(self.cv), shuffle=True, random_state=seed % (2**32))
        else:
            cv = check_cv(self.cv, y, classifier=True)
        folds = list(cv.split(X, y))
        counts = np.bincount(np.concatenate([test for _, test in folds]), minlength=X.shape[0])
        if not np.all(counts == 1):
            raise ValueError(
                "cv must put every training row in exactly one test fold (a partition such as KFold), "
                "so that every row gets out-of-fold layer scores for the combiner."
            )
        return folds

    def _build_kernel_net(self):
        kernel_net = nn.Module()
        kernel_net.layers = nn.ModuleDict()
        for index, estimator in enumerate(self.layer_estimators_):
            machine = kernel_machine_from(estimator)
            if machine is not None:
                kernel_net.layers[str(index)] = machine
        kernel_net.combiner = kernel_machine_from(self.combiner_)
        return kernel_net.to(self.device_).eval()

    def _inference_values_per_row(self):
        # float64 layer features, and a float64 kernel row against every support vector.
        kernel_net = getattr(self, "kernel_net_", None)
        n_support = (
            0
            if kernel_net is None
            else sum(getattr(machine, "support_vectors", torch.empty(0)).shape[0] for machine in kernel_net.modules())
        )
        return self.n_features_in_ + 2 * n_support

    # -- torch evaluation -----------------------------------------------------
    def _scores_of(self, estimator, machine, z, dtype=torch.float64):
        if machine is not None:
            scores = machine(z, dtype=dtype)
        else:
            scores = torch.as_tensor(
                np.asarray(estimator.decision_function(z.detach().cpu().double().numpy())),
                dtype=torch.float64,
                device=z.device,
            )
        return _per_class(scores, len(self.classes_))

    def _layer_scores(self, x):
        """The layer classifiers' scores side by side (the combiner's input), batch shaped ``(n, *input_shape_)``."""
        dtype = getattr(torch, getattr(self, "kernel_dtype", "float64"))
        # Captured in the kernels' precision (no float64 copy for float32 kernels to cast back),
        # unless a layer classifier without a kernel machine takes them as float64.
        all_machines = len(self.kernel_net_.layers) == len(self.layer_estimators_)
        layer_outputs = capture_layers(self.model_.net, self.layer_names_, x, dtype if all_machines else torch.float64)
        layer_scores = [
            self._scores_of(
                estimator, self.kernel_net_.layers[str(i)] if str(i) in self.kernel_net_.layers else None, z, dtype
            )
            for i, (estimator, z) in enumerate(zip(self.layer_estimators_, layer_outputs))
        ]
        return torch.cat(layer_scores, dim=1)

    def _class_scores(self, x):
        """Combiner scores ``(n, n_classes)`` (float64) of a batch shaped ``(n, *input_shape_)``."""
        return self._combiner_scores(self._layer_scores(x))

    def _combiner_scores(self, z):
        """Combiner scores ``(n, n_classes)`` (float64) of stacked layer scores ``z``."""
        return self._scores_of(self.combiner_, self.kernel_net_.combiner, z)

    def _threshold_value(self):
        if self.threshold is None:
            return -np.inf
        if not isinstance(self.threshold, numbers.Real) or np.isnan(self.threshold):
            raise ValueError(f"threshold must be a real number or None, got {self.threshold!r}.")
        return float(self.threshold)

    def attack_surface(self, *, threshold=None):
        """The public attack protocol: class scores and reject option as one differentiable model.

        ``forward`` returns the combiner's per-class scores (raw SVM scores, float64)
        and the threshold as a last column, so the argmax is that column exactly when
        the row is rejected; ``classifier`` is the protected network alone. With a
        finite threshold, ``escape`` gives the combiner's escape scores and
        ``forward_with_escape`` both from one pass through the network and the layer
        classifiers (attack protocol 2, see :class:`~skadv.utils.AttackSurface`).

        Parameters
        ----------
        threshold : float, default=None
            The reject threshold of the surface (rows whose highest class score is
            strictly below it are rejected; ``-inf`` rejects none). None means
            :attr:`threshold_`, the estimator's own.

        Returns
        -------
        surface : skadv.utils.AttackSurface
            For the current ``threshold`` (take a new one after changing it).

        Raises
        ------
        NotFittedError
            When the estimator is not fitted.
        ValueError
            When a layer classifier or the combiner has no torch evaluation.
        """
        check_is_fitted(self)
        threshold = self._threshold_value() if threshold is None else float(threshold)
        if self.kernel_net_.combiner is None or len(self.kernel_net_.layers) < len(self.layer_estimators_):
            raise ValueError(
                "Gradients need every layer classifier and the combiner to be RBF SVMs "
                "(OneVsAllSVC, a binary RBF SVC or OneVsRestClassifier of RBF SVCs)."
            )

        def with_threshold(scores):
            return torch.cat([scores, scores.new_full((scores.shape[0], 1), threshold)], dim=1)

        def forward(x):
            return with_threshold(self._class_scores(x))

        def classifier(x):
            return self.model_(self._preprocess(x))

        def escape_of(z):
            # The combiner's scores against the threshold as log-ratios of their RBF expansions:
            # same sign, and a gradient in the flat region far from every support vector.
            combiner = self.kernel_net_.combiner
            ratio = combiner.log_ratio(z, threshold)
            if ratio.shape[1] == 1 and n_classes == 2:  # class 0 scores -d: -d > t exactly when d < -t
                return torch.cat([-combiner.log_ratio(z, -threshold), ratio], dim=1)
            return ratio

        def forward_with_escape(x):
            # One pass through the network and the layer classifiers for both.
            z = self._layer_scores(x)
            return with_threshold(self._combiner_scores(z)), escape_of(z)

        n_classes = len(self.classes_)
        return AttackSurface(
            forward=forward,
            classifier=classifier,
            escape=(lambda x: escape_of(self._layer_scores(x))) if np.isfinite(threshold) else None,
            forward_with_escape=forward_with_escape if np.isfinite(threshold) else None,
            n_classes=n_classes,
            reject_index=n_classes,
            device=self.device_,
            input_shape=self.input_shape_,
            outputs_are_logits=False,
            classes=self.classes_,
        )

    # -- public API -----------------------------------------------------------
    def _class_scores_validated(self, X):
        return self._batched(self._class_scores, X)

    def decision_function(self, X):
        """Combiner score of each class, and the threshold as a last column.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes + 1), float64
            Raw one-vs-all SVM decision values of the combiner; the last column is the
            threshold (``-inf`` when ``threshold`` is None). The argmax is the last
            column exactly for rejected rows.
        """
        scores = self._class_scores_validated(self._validate_predict_input(X))
        return np.hstack([scores, np.full((scores.shape[0], 1), self._threshold_value())])

    def score_samples(self, X):
        """Highest class score of each row (the score compared with the threshold).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,), float64
        """
        return self._class_scores_validated(self._validate_predict_input(X)).max(axis=1)

    def predict(self, X):
        """Class with the highest score, or -1 where that score is below the threshold.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Labels from ``classes_``, and -1 for rejected rows (an object array if the
            classes are not numbers and some row is rejected).
        """
        scores = self._class_scores_validated(self._validate_predict_input(X))
        labels = self.classes_[scores.argmax(axis=1)]
        rejected = scores.max(axis=1) < self._threshold_value()
        if not rejected.any():
            return labels
        if REJECT_LABEL in self.classes_:
            warn_at_caller(
                f"{REJECT_LABEL} is both a class and the reject label; use decision_function or "
                "score_samples to tell rejected rows apart.",
                UserWarning,
            )
        if labels.dtype.kind not in "iuf":
            labels = labels.astype(object)
        elif labels.dtype.kind == "u":
            labels = labels.astype(np.int64)
        labels[rejected] = REJECT_LABEL
        return labels

    @property
    def threshold_(self):
        """The threshold in effect: ``threshold``, or ``-inf`` (reject nothing) when it is None.

        On the class-score scale, as secml's: a row is rejected when its highest class
        score (:meth:`score_samples`) is strictly below it. (The outlier detectors'
        ``threshold_`` is on the adversarial score, whose sign is the opposite; their
        ``offset_`` and :class:`DNRDetector`'s ``offset_`` share this scale.)
        """
        check_is_fitted(self)
        return self._threshold_value()

    def infer_threshold(self, X, threshold_perc=95, margin=0.0, batch_size=None):
        """Set the threshold so that ``threshold_perc`` percent of clean ``X`` is accepted.

        The same call, with the same meaning, as the detectors' ``infer_threshold``: the
        threshold becomes the ``100 - threshold_perc`` percentile of :meth:`score_samples`
        on ``X`` (the detectors' ``offset_``) minus ``margin``, and rows scoring strictly
        below it are rejected. Like ``set_params(threshold=...)``, it sets the ``threshold``
        parameter, which is read at prediction time (no refit). For secml's semantics
        (a fraction of rows to reject, rounded to a number of rows) use
        :meth:`compute_threshold`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Clean data, ideally held out from training.
        threshold_perc : float in [0, 100], default=95
            Share of ``X`` to accept, in percent (95 rejects 5 %). A value in (0, 1]
            warns: it is read as a percent, not a fraction.
        margin : float, default=0.0
            Moves the threshold toward accepting more rows, as the detectors' ``margin``
            (alibi-detect's) does on the adversarial score: the threshold is lowered by it.
        batch_size : int, default=None
            alibi-detect's scoring batch, accepted for its call; it changes no result.

        Returns
        -------
        self : object
        """
        check_threshold_perc(threshold_perc)
        margin = check_threshold_options(margin, batch_size)
        return self.set_params(threshold=_accepting_score(self.score_samples(X), threshold_perc) - margin)

    def compute_threshold(self, X=None, rej_percent=None, *, ds=None):
        """Threshold that rejects exactly ``round(rej_percent * n_samples)`` rows of ``X`` (secml's call).

        The estimator is not changed: apply the result with ``set_params(threshold=...)``.
        Rows tied at the threshold score are all kept, so ties can reject fewer rows.
        :meth:`infer_threshold` is the call shared with the detectors. secml's forms
        work too: ``compute_threshold(rej_percent=0.1, ds=ts)`` and
        ``compute_threshold(0.1, ts)`` (a number first is secml's order).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Clean validation data.
        rej_percent : float in [0, 1]
            Fraction of ``X`` to reject (secml's name; 0.1 rejects 10 %). The number of
            rows is rounded half up; 0 rejects none and 1 all.
        ds : array-like, or object with an ``X`` attribute, or (X, y) pair, default=None
            secml's name for the data, in place of ``X``: an array, a dataset with its
            rows in ``ds.X`` (secml's ``CDataset``; a ``tondarray()`` method is used when
            there), or an ``(X, y)`` tuple (``y`` ignored).

        Returns
        -------
        threshold : float
        """
        if isinstance(X, numbers.Real) and not isinstance(X, bool) and rej_percent is not None:
            X, rej_percent = _rows_of(rej_percent), X  # secml's positional order (rej_percent, ds)
        if ds is not None:
            if X is not None:
                raise ValueError("Pass the data once: X (skadv's name) or ds (secml's), not both.")
            X = _rows_of(ds)
        if X is None or rej_percent is None:
            raise ValueError(
                "compute_threshold needs the data and the fraction to reject: compute_threshold(X, rej_percent), "
                "or secml's compute_threshold(rej_percent=..., ds=...)."
            )
        if not isinstance(rej_percent, numbers.Real) or not 0 <= rej_percent <= 1:
            raise ValueError(f"rej_percent must be a fraction in [0, 1], got {rej_percent!r}.")
        scores = np.sort(self.score_samples(X))
        n_rejected = int(np.floor(rej_percent * len(scores) + 0.5))
        if n_rejected >= len(scores):
            return float(np.nextafter(scores[-1], np.inf))
        # Rows strictly below the (n_rejected + 1)-th smallest score are rejected.
        return float(scores[n_rejected])

    def as_detector(self):
        """This fitted classifier as an outlier detector (accepted +1, rejected -1).

        Returns
        -------
        detector : DNRDetector
            Fitted detector wrapping this estimator (frozen, so ``clone`` keeps it).
        """
        from ._dnr_detector import DNRDetector

        check_is_fitted(self)
        return DNRDetector(FrozenEstimator(self)).fit(None)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
