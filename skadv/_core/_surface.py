"""The public attack protocol: what an attack needs from the estimator it attacks.

An attackable estimator implements one method, ``attack_surface()``, returning an
:class:`AttackSurface`. Attacks and metrics reach every target through
:func:`resolve_attack_surface`, so a third-party detector becomes attackable by
implementing that method alone.
"""

import dataclasses
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator

from ._model import adapt_model

__all__ = ["AttackSurface", "resolve_attack_surface"]

# Rows of X that probe a plain model's output once.
_PROBE_ROWS = 8


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttackSurface:
    """Differentiable view of a defended classifier, as attacks see it.

    Returned by the ``attack_surface()`` method of every attackable estimator
    (each skadv detector, :class:`~skadv.DeepNeuralRejection`,
    :class:`~skadv.DNRDetector`, and any third-party detector implementing it).
    The detector becomes an extra class (Carlini & Wagner, 2017): column ``K``
    of :attr:`forward`'s output is the "flagged / rejected" score, and the
    argmax of a row is ``K`` exactly when the estimator flags (rejects) it.
    An adaptive attack optimises against :attr:`forward`, a non-adaptive one
    against :attr:`classifier`.

    Parameters
    ----------
    forward : callable
        Maps a float32 tensor ``(n, *input_shape)`` on ``device`` (raw inputs,
        before any preprocessing of the estimator) to adaptive scores
        ``(n, K + 1)``: columns ``0..K-1`` the defended system's class scores,
        column ``K`` the flagged score. Differentiable. For the surface of a
        plain classifier (``reject_index=None``) it is :attr:`classifier`.
    classifier : callable
        Maps raw inputs to the ``(n, K)`` class scores of the protected
        classifier alone (logits or log-probabilities). Differentiable.
    n_classes : int
        Number of classes ``K``.
    reject_index : int or None
        ``K`` when :attr:`forward` has the flagged column, None for the
        surface of a plain classifier.
    device : torch.device
        Where the inputs must be.
    input_shape : tuple of int or None, default=None
        Shape of one input as :attr:`forward` takes it; None keeps the rows of
        ``X`` as they are.
    stochastic : bool, default=False
        Whether :attr:`forward` is randomized (fresh draws at every call):
        attacks then average gradients over draws (EOT).
    outputs_are_logits : bool, default=True
        Whether the softmax of :attr:`forward`'s output is a confidence (logits
        or log-probabilities). False for raw decision scores, such as DNR's
        one-vs-all SVM scores, whose softmax means little.
    classes : array-like or None, default=None
        Labels of the ``K`` class columns; None when the labels are the column
        indices.
    escape : callable or None, default=None
        Optional. Maps raw inputs to ``(n, K)`` scores, one per class, with
        the sign of "column ``k`` of :attr:`forward` minus the flagged
        column" (positive exactly where the row's class-``k`` score clears
        the flagged score) and a gradient that does not vanish where
        :attr:`forward` is flat. A detector whose reject region is flat
        (DNR's RBF combiner, at its intercepts far from every support vector)
        provides it so that attacks can leave that region:
        :class:`~skadv.attacks.APGD`'s ``loss="escape"`` and
        :class:`~skadv.attacks.AutoAttack`'s ``"escape"`` member, run
        automatically when it is set. None when the estimator has none (or
        when :attr:`forward_with_escape` gives them).
    forward_with_escape : callable or None, default=None
        Optional, for surfaces with :attr:`escape` scores. Maps raw inputs to
        the pair ``(forward(x), escape(x))`` computed in **one** pass
        through the defended system (for DNR: the network and the layer
        classifiers once, then the combiner's scores and its escape scores
        from the same layer scores). Both differentiable. The escape attack
        follows the gradient of the escape scores and judges success on the
        scores of every step: one pass instead of two (on DNR, a step then
        costs about 30 % less).
        When only this is given, :attr:`escape` is derived from it; when
        only :attr:`escape` is given (a surface written for protocol 1),
        attacks run :attr:`escape` and :attr:`forward` separately, with the
        same results at the old cost.

        .. versionadded:: 0.x
           Attack protocol 2 (:attr:`protocol_version`).

    Attributes
    ----------
    protocol_version : int
        Version of the attack protocol this class implements (a class
        attribute): 1 had ``forward``, ``classifier`` and ``escape``; 2 adds
        :attr:`forward_with_escape`. A third-party detector supporting
        several skadv versions passes ``forward_with_escape`` only when
        ``getattr(AttackSurface, "protocol_version", 1) >= 2``.

    See Also
    --------
    resolve_attack_surface : The surface of any target (estimator or plain model).

    Examples
    --------
    A third-party detector becomes attackable by implementing ``attack_surface``:

    >>> import numpy as np
    >>> import torch
    >>> from skadv.attacks import PGD
    >>> from skadv.utils import AttackSurface
    >>> class NormDetector:
    ...     "Flags inputs whose L2 norm exceeds a threshold."
    ...     def __init__(self, model, threshold):
    ...         self.model, self.threshold = model, threshold
    ...     def attack_surface(self):
    ...         def forward(x):
    ...             logits = self.model(x)
    ...             flagged = logits.max(dim=1).values + x.norm(dim=1) - self.threshold
    ...             return torch.cat([logits, flagged[:, None]], dim=1)
    ...         return AttackSurface(forward=forward, classifier=self.model, n_classes=3,
    ...                              reject_index=3, device=torch.device("cpu"))
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> detector = NormDetector(torch.nn.Linear(4, 3), threshold=1.5)
    >>> surface = detector.attack_surface()
    >>> X = np.random.RandomState(0).rand(5, 4).astype(np.float32)
    >>> surface.scores(X).shape
    (5, 4)
    >>> X_adv = PGD(detector, eps=0.1, max_iter=5, random_state=0).generate(X)
    >>> bool(np.abs(X_adv - X).max() <= 0.1 + 1e-6)
    True
    """

    forward: Callable
    classifier: Callable
    n_classes: int
    reject_index: int | None
    device: torch.device
    input_shape: tuple | None = None
    stochastic: bool = False
    outputs_are_logits: bool = True
    classes: object = None
    escape: Callable | None = None
    forward_with_escape: Callable | None = None

    protocol_version: ClassVar[int] = 2

    def __post_init__(self):
        if self.forward_with_escape is not None and self.escape is None:
            forward_with_escape = self.forward_with_escape
            object.__setattr__(self, "escape", lambda x: forward_with_escape(x)[1])
        if self.reject_index is not None and self.reject_index != self.n_classes:
            raise ValueError(
                f"reject_index must be n_classes ({self.n_classes}), the last column of forward's output, "
                f"or None; got {self.reject_index}."
            )
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "device", torch.device(self.device))

    def classifier_only(self):
        """The surface of the protected classifier alone (what a non-adaptive attack targets).

        Returns
        -------
        surface : AttackSurface
            With ``forward = classifier``, no flagged column, deterministic,
            no ``escape``.
        """
        return dataclasses.replace(
            self,
            forward=self.classifier,
            reject_index=None,
            stochastic=False,
            outputs_are_logits=True,
            escape=None,
            forward_with_escape=None,
        )

    def to_tensor(self, X):
        """Rows of ``X`` as a float32 tensor ``(n, *input_shape)`` on :attr:`device`."""
        X = torch.as_tensor(np.asarray(X, dtype=np.float32))
        if self.input_shape is not None:
            X = X.reshape(X.shape[0], *self.input_shape)
        return X.to(self.device)

    def scores(self, X, *, batch_size=256):
        """:attr:`forward`'s output for the rows of ``X``, in batches, without gradients.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, *input_shape)
        batch_size : int, default=256

        Returns
        -------
        scores : ndarray of float64 of shape (n_samples, K + 1), or (n_samples, K) without reject column
        """
        X = np.asarray(X)
        out = []
        with torch.no_grad():
            for start in range(0, X.shape[0], batch_size):
                out.append(self.forward(self.to_tensor(X[start : start + batch_size])).detach().cpu())
        return torch.cat(out).numpy().astype(np.float64)

    def labels_to_indices(self, y):
        """Map labels to column indices ``0..K-1`` (ValueError for an unknown label)."""
        y = np.asarray(y)
        if self.classes is not None:
            classes = np.asarray(self.classes)
            sorter = np.argsort(classes)
            pos = np.clip(np.searchsorted(classes, y, sorter=sorter), 0, len(classes) - 1)
            idx = sorter[pos]
            unknown = classes[idx] != y
            if np.any(unknown):
                raise ValueError(
                    f"y contains labels {np.unique(y[unknown])[:5].tolist()} that are "
                    f"not among the model's classes {classes.tolist()}."
                )
            return idx.astype(np.int64)
        if not np.issubdtype(y.dtype, np.integer):
            if np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)):
                y = y.astype(np.int64)
            else:
                raise ValueError(
                    "y must hold integer class indices in [0, n_classes) when the "
                    f"target exposes no classes_; got dtype {y.dtype}."
                )
        if y.size and (y.min() < 0 or y.max() >= self.n_classes):
            raise ValueError(
                f"y must hold class indices in [0, {self.n_classes}); got values in [{y.min()}, {y.max()}]."
            )
        return y.astype(np.int64)

    def indices_to_labels(self, idx):
        """Map column indices ``0..K-1`` to the class labels."""
        return np.asarray(idx) if self.classes is None else np.asarray(self.classes)[idx]


def resolve_attack_surface(target, X, *, input_shape=None, device=None):
    """The :class:`AttackSurface` of what an attack is run against.

    Parameters
    ----------
    target : object
        Any object with an ``attack_surface()`` method (every skadv detector,
        :class:`~skadv.DeepNeuralRejection`, :class:`~skadv.DNRDetector`, a
        third-party detector), or a plain classifier: a torch module returning
        class scores or a fitted skorch net (its surface has no flagged
        column). :class:`~sklearn.frozen.FrozenEstimator` wrappers are
        unwrapped.
    X : array-like of shape (n_samples, ...)
        Inputs the surface will see: they check ``input_shape`` and probe a
        plain classifier's output once.
    input_shape : tuple of int, default=None
        Shape of one input as the model expects it; None uses the estimator's.
    device : str or torch.device, default=None
        Device of a plain classifier (an estimator's surface keeps its own).

    Returns
    -------
    surface : AttackSurface

    Raises
    ------
    ValueError
        When the target is neither attackable nor a differentiable classifier,
        or ``input_shape`` does not match the rows of ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from skadv.utils import resolve_attack_surface
    >>> X = np.zeros((4, 6), dtype=np.float32)
    >>> surface = resolve_attack_surface(torch.nn.Linear(6, 3), X)
    >>> surface.n_classes, surface.reject_index
    (3, None)
    """
    # sklearn.frozen.FrozenEstimator keeps a fitted skorch net fitted through clone().
    while isinstance(target, FrozenEstimator):
        target = target.estimator
    X = np.asarray(X)
    if hasattr(target, "attack_surface"):
        surface = target.attack_surface()
        if not isinstance(surface, AttackSurface):
            raise ValueError(
                f"{type(target).__name__}.attack_surface() must return a skadv.utils.AttackSurface; "
                f"got {type(surface).__name__}."
            )
        if input_shape is not None:
            surface = dataclasses.replace(surface, input_shape=input_shape)
        _check_input_shape(surface.input_shape, X)
        return surface
    try:
        adapter = adapt_model(target, need_gradients=True)
    except ValueError as exc:
        raise ValueError(
            f"{exc} (An attack's target may also be a fitted skadv estimator, or any object with an "
            "attack_surface() method.)"
        ) from exc
    module = adapter.module.net
    dev = torch.device(device if device is not None else getattr(target, "device", None) or _module_device(module))
    adapter.to(dev)
    _check_input_shape(input_shape, X)
    surface = AttackSurface(
        forward=adapter.module.scores, classifier=adapter.module.scores, n_classes=0, reject_index=None,
        device=dev, input_shape=input_shape, classes=adapter.classes,
    )
    # The one check of a raw model's output (shape, probabilities vs logits).
    n_classes = adapter.check_output(surface.to_tensor(X[:_PROBE_ROWS]))
    return dataclasses.replace(surface, n_classes=n_classes)


def _check_input_shape(input_shape, X):
    if input_shape is None:
        return
    n_values = int(np.prod(X.shape[1:]))
    if int(np.prod(input_shape)) != n_values:
        raise ValueError(
            f"input_shape={tuple(input_shape)} holds {int(np.prod(input_shape))} values but "
            f"each row of X has {n_values}."
        )


def _module_device(module):
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return torch.device("cpu")
