"""Mahalanobis baseline: distance of hidden features to class-conditional Gaussians."""

import numbers
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import clone
from sklearn.covariance import EmpiricalCovariance, LedoitWolf

from .._core import (
    HasMethods,
    Interval,
    StrOptions,
    fill_detector_doc,
    forward_capturing,
    resolve_layers,
    warn_at_caller,
)
from ..base import BaseDetector
from ._confidence import input_gradient_sign

_COVARIANCES = {"empirical": EmpiricalCovariance, "ledoit_wolf": LedoitWolf}


@fill_detector_doc
class MahalanobisDetector(BaseDetector):
    """Flag inputs whose hidden features lie far from every class of clean data.

    For each captured layer, the features of clean rows (see ``pooling``) are modelled as
    class-conditional Gaussians with class means ``μ_c`` and one covariance ``Σ`` shared
    by all classes (tied). A row's layer score is its squared Mahalanobis distance to
    the closest class, ``min_c (f - μ_c)ᵀ Σ⁻¹ (f - μ_c)``. Layers are combined without any
    attack data: each layer's score is standardised by its mean and standard deviation
    over the clean rows given to ``fit``, and the standardised scores are summed.

    ``fit`` ignores ``y``, as every detector does: the classes are those the protected
    classifier predicts on the clean rows (classes it never predicts get no Gaussian).

    Parameters
    ----------
%(model)s
    layers : sequence of str or int, default=None
        Layers whose outputs are modelled: dotted names from ``model.named_modules()``
        or int positions in that list without the root entry (``-2`` is the
        second-to-last module: for an ``nn.Sequential`` MLP the activation before the
        output layer, the penultimate features). None takes every leaf module (one
        without submodules) but the last, the output layer: Lee et al.'s feature
        ensemble over the whole network. On digits PGD rows (``benchmarks/baselines.py``)
        it separates far better than the penultimate layer alone (AUROC 0.99 vs 0.68 on
        a CNN, 0.997 vs 0.973 on an MLP). With None, a leaf whose features (after
        ``pooling``) outnumber ``max_layer_features`` is left out with a warning naming
        it; layers named here are all kept.
    max_layer_features : int or None, default=1024
        Widest layer ``layers=None`` keeps. Feature maps are mean-pooled to one
        feature per channel, so this leaves out wide *vectors*: typically the
        ``nn.Flatten`` output of a CNN (6272 features on a 28×28 digits CNN), the
        same activations as the pooled map before it, whose ``d × d`` covariance
        costs ``O(n d²)`` to estimate and ``O(d³)`` to invert (minutes at
        ``d`` = 6272). None keeps every leaf.
    pooling : {'mean', 'none'}, default='mean'
        How a layer's output with more than one axis per row (a channels-first feature
        map ``(C, H, W)``) becomes a vector: 'mean' averages each channel over its
        positions, giving ``C`` features, as Lee et al. do; 'none' flattens it (the
        covariance then has ``(C·H·W)²`` entries). Vectors pass as they are.
    covariance : {'ledoit_wolf', 'empirical'} or scikit-learn covariance estimator, default='ledoit_wolf'
        Estimator of the tied covariance, fitted on the class-centred features with
        ``assume_centered=True``. Lee et al. use the empirical covariance; Ledoit-Wolf
        shrinkage keeps the precision well conditioned when features outnumber rows.
    noise_eps : float, default=0.0
        Input pre-processing of Lee et al.: each layer scores the row at
        ``x - noise_eps · sign(∇ₓ d_l(x))``, a step that brings clean rows closer to
        their class more than abnormal ones (``d_l`` the layer's distance). Applied after
        ``preprocess_fn``. 0 disables it; each layer then costs one extra forward and
        backward pass.
%(detector_params)s
%(input_params)s

    Attributes
    ----------
    layers_ : tuple of str
        Dotted names of the captured layers.
    classes_present_ : ndarray of int
        Output indices the classifier predicts on the clean rows: one Gaussian each.
    class_means_ : list of ndarray of shape (n_classes_present, n_layer_features)
        Per layer, the class means of the (pooled or flattened) features.
    covariances_ : list of fitted covariance estimators
        Per layer, the tied covariance (``get_precision()`` is its inverse).
    layer_mean_, layer_std_ : ndarray of shape (n_layers,)
        Mean and standard deviation of each layer's score over the clean rows.
%(model_attributes)s
%(detector_attributes)s

    See Also
    --------
    ConfidenceDetector : the classifier's own confidence as the score.

    References
    ----------
    K. Lee, K. Lee, H. Lee, J. Shin. "A simple unified framework for detecting
    out-of-distribution samples and adversarial attacks", NeurIPS 2018.

    Examples
    --------
    >>> import torch
    >>> from sklearn.datasets import load_digits
    >>> from skadv import MahalanobisDetector
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16.0
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    >>> det = MahalanobisDetector(net).fit(X[:1000])
    >>> det.layers_
    ('0', '1')
    >>> float((det.predict(X[:1000]) == -1).mean())
    0.05
    """

    _parameter_constraints: ClassVar[dict] = {
        **BaseDetector._parameter_constraints,
        "layers": [list, tuple, None],
        "max_layer_features": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "pooling": [StrOptions({"mean", "none"})],
        "covariance": [StrOptions(set(_COVARIANCES)), HasMethods(["fit", "get_precision"])],
        "noise_eps": [Interval(numbers.Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        model=None,
        *,
        layers=None,
        max_layer_features=1024,
        pooling="mean",
        covariance="ledoit_wolf",
        noise_eps=0.0,
        model_output="auto",
        threshold=None,
        contamination=0.05,
        validation_fraction=None,
        inference_batch_size=None,
        preprocess_fn=None,
        input_shape=None,
        device="cpu",
        random_state=None,
    ):
        self.model = model
        self.layers = layers
        self.max_layer_features = max_layer_features
        self.pooling = pooling
        self.covariance = covariance
        self.noise_eps = noise_eps
        self.model_output = model_output
        self.threshold = threshold
        self.contamination = contamination
        self.validation_fraction = validation_fraction
        self.inference_batch_size = inference_batch_size
        self.preprocess_fn = preprocess_fn
        self.input_shape = input_shape
        self.device = device
        self.random_state = random_state

    def _layer_features(self, output):
        if self.pooling == "mean" and output.ndim > 2:
            output = output.flatten(2).mean(dim=2)
        # A copy (later in-place operations of the pass must not change it), still differentiable.
        return output.flatten(1).to(torch.float64, copy=True)

    def _capture(self, x, need_output=False, layers=None):
        """Features of ``layers`` (default: the fitted ``layers_``) on ``x``, pooled or flattened."""
        return forward_capturing(
            self.model_.net, self.layers_ if layers is None else layers, x, forward=self.model_,
            transform=self._layer_features, need_output=need_output,
        )

    def _default_layers(self, X):
        """Every leaf module but the output layer, less those wider than ``max_layer_features``."""
        leaves = [name for name, module in self.model_.net.named_modules() if name and not any(module.children())]
        layers = leaves[:-1] or leaves
        if self.max_layer_features is None or not layers:
            return layers
        # One row through the network tells each layer's width after pooling.
        with torch.inference_mode():
            _, captured = self._capture(self._preprocess(next(self._iter_batches(X[:1]))), layers=layers)
        widths = [features.shape[1] for features in captured]
        wide = [f"{name!r} ({width})" for name, width in zip(layers, widths) if width > self.max_layer_features]
        if wide:
            warn_at_caller(
                f"MahalanobisDetector leaves out layers wider than max_layer_features={self.max_layer_features} "
                f"features: {', '.join(wide)}. Raise max_layer_features (None keeps every layer) or name the "
                f"layers to model in layers.",
                UserWarning,
            )
        kept = [name for name, width in zip(layers, widths) if width <= self.max_layer_features]
        if not kept:
            raise ValueError(
                f"No layer to read: every layer is wider than max_layer_features={self.max_layer_features}; "
                f"raise it or name the layers to model in layers."
            )
        return kept

    def _fit_detector(self, X, seed):
        layers = self._default_layers(X) if self.layers is None else self.layers
        if len(layers) == 0:
            raise ValueError(
                "No layer to read: name at least one layer of the model in layers, e.g. layers=(-2,) "
                "(with layers=None, the model must have submodules)."
            )
        self.layers_ = resolve_layers(self.model_.net, layers)
        with torch.inference_mode():
            batches = [self._capture(self._preprocess(x), need_output=True) for x in self._iter_batches(X)]
        labels = torch.cat([log_proba.argmax(dim=1) for log_proba, _ in batches]).cpu().numpy()
        self.classes_present_ = np.unique(labels)
        self.class_means_, self.covariances_, self._whitened_ = [], [], []
        for layer in range(len(self.layers_)):
            features = torch.cat([captured[layer] for _, captured in batches]).cpu().numpy()
            means = np.stack([features[labels == c].mean(axis=0) for c in self.classes_present_])
            centred = features - means[np.searchsorted(self.classes_present_, labels)]
            covariance = self.covariance
            covariance = _COVARIANCES[covariance]() if isinstance(covariance, str) else clone(covariance)
            if "assume_centered" in covariance.get_params():
                covariance.set_params(assume_centered=True)
            self.class_means_.append(means)
            self.covariances_.append(covariance.fit(centred))
            eigenvalues, eigenvectors = np.linalg.eigh(covariance.get_precision())
            whitening = eigenvectors * np.sqrt(eigenvalues.clip(min=0))
            self._whitened_.append((whitening, means @ whitening))
        self.layer_mean_, self.layer_std_ = np.zeros(len(self.layers_)), np.ones(len(self.layers_))
        layer_scores = self._batched(self._layer_scores, X)
        self.layer_mean_ = layer_scores.mean(axis=0)
        std = layer_scores.std(axis=0)
        self.layer_std_ = np.where(std > 0, std, 1.0)  # a constant layer adds nothing to the ranking

    def _min_distances(self, features, layer):
        """Squared Mahalanobis distance of each row of ``features`` to its closest class mean."""
        whitening, means = (torch.as_tensor(a, device=features.device) for a in self._whitened_[layer])
        # ||(f - μ_c) W||² with W Wᵀ = Σ⁻¹: differences of whitened vectors, free of the
        # cancellation that expanding the quadratic form suffers when Σ⁻¹ is large.
        whitened = features @ whitening
        return torch.stack([(whitened - mean).square().sum(dim=1) for mean in means], dim=1).min(dim=1).values

    def _layer_scores(self, x):
        """Standardised per-layer scores ``(n, n_layers)`` of a preprocessed batch."""
        if self.noise_eps == 0:
            _, captured = self._capture(x)
            scores = [self._min_distances(features, layer) for layer, features in enumerate(captured)]
        else:
            scores = []
            for layer in range(len(self.layers_)):

                def distance(rows, layer=layer):
                    return self._min_distances(self._capture(rows)[1][layer], layer)

                scores.append(distance(x - self.noise_eps * input_gradient_sign(distance, x)))
        mean, std = (torch.as_tensor(a, device=x.device) for a in (self.layer_mean_, self.layer_std_))
        return (torch.stack(scores, dim=1) - mean) / std

    def _score_tensor(self, x):
        return self._layer_scores(x).sum(dim=1)

    def _inference_values_per_row(self):
        # The captured features of every layer, next to the input.
        widths = sum(means.shape[1] for means in getattr(self, "class_means_", ()))
        return self.n_features_in_ + widths
