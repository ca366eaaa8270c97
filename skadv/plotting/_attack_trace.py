"""Trace of one input's attack: loss and confidences (or raw scores) per iteration, and the images."""

import numpy as np

from ..attacks import BaseAttack
from ._base import _DisplayMixin, _legend_above_data


def _as_image(x, image_shape):
    x = np.asarray(x, dtype=float)
    if image_shape is not None:
        x = x.reshape(image_shape)
    else:
        side = round(np.sqrt(x.size))
        if side * side == x.size and x.ndim == 1:
            x = x.reshape(side, side)
    x = np.squeeze(x)
    if x.ndim == 3 and x.shape[0] in (1, 3, 4) and x.shape[-1] not in (1, 3, 4):
        x = np.moveaxis(x, 0, -1)  # channels first -> last for imshow
    if x.ndim == 1:
        x = x[None, :]
    return x


class AttackTraceDisplay(_DisplayMixin):
    """Trace of one input's attack: loss and confidences per iteration, and the images.

    The figure of secml's DNR tutorial: the attack's objective
    per iteration, the confidence (or raw score) of the true class, of the
    best other class (and of the "rejected" output in an adaptive attack),
    next to the original and the adversarial input.

    Parameters
    ----------
    trace : Bunch
        An attack's ``trace_`` (arrays of shape ``(n_iter, n_samples)``).
    sample_index : int, default=0
        Column of ``trace`` to show.
    x_original, x_adversarial : array-like, default=None
        The input and its adversarial version (one row); shown as images
        when given.
    image_shape : tuple of int, default=None
        Shape to reshape a row into for display; None reshapes a square
        number of features into a square.
    clip_values : tuple, default=(0, 1)
        Colour range of the images.
    attack_name : str, default=None
        Shown in the loss panel's title.
    quantity : {"auto", "confidence", "score"}, default="auto"
        What the second panel shows per iteration. ``"confidence"``: the
        softmax probabilities of the target's outputs (``true_confidence``,
        ...). ``"score"``: the raw outputs (``true_score``, ...), e.g.
        :class:`~skadv.DeepNeuralRejection`'s class scores, with its reject
        threshold as a dashed line. ``"auto"`` shows confidences when the
        trace's scores are a classifier's logits (``trace["scores_are_logits"]``)
        and raw scores otherwise: the softmax of raw SVM scores is
        near-uniform, so its curves would stay flat while the attack works.
        Traces without raw scores (recorded before they existed) always show
        confidences under ``"auto"``.
    y_true : object, default=None
        True label of the input, shown in the original image's title.
    y_pred, y_pred_adversarial : object, default=None
        Labels predicted for the original and the adversarial input, shown in
        the images' titles; ``reject_label`` is shown as "rejected".
    reject_label : object, default=-1
        The label that means "rejected" (DeepNeuralRejection's, and the
        detectors' ``predict`` output for a flagged row).

    Attributes
    ----------
    axes_ : ndarray of matplotlib Axes
        Loss, confidence (or score) and (when images are given) original and
        adversarial panels.
    quantity_ : {"confidence", "score"}
        What the second panel shows (``quantity`` with ``"auto"`` resolved).
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> import torch
    >>> from skadv.attacks import PGD
    >>> from skadv.plotting import AttackTraceDisplay
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(16, 3)
    >>> X = np.random.RandomState(0).rand(2, 16).astype(np.float32)
    >>> disp = AttackTraceDisplay.from_attack(PGD(model, eps=0.2, max_iter=5, random_state=0), X)
    >>> len(disp.axes_)
    4
    """

    def __init__(
        self,
        *,
        trace,
        sample_index=0,
        x_original=None,
        x_adversarial=None,
        image_shape=None,
        clip_values=(0, 1),
        attack_name=None,
        quantity="auto",
        y_true=None,
        y_pred=None,
        y_pred_adversarial=None,
        reject_label=-1,
    ):
        self.trace = trace
        self.sample_index = sample_index
        self.x_original = x_original
        self.x_adversarial = x_adversarial
        self.image_shape = image_shape
        self.clip_values = clip_values
        self.attack_name = attack_name
        self.quantity = quantity
        self.y_true = y_true
        self.y_pred = y_pred
        self.y_pred_adversarial = y_pred_adversarial
        self.reject_label = reject_label

    def _resolve_quantity(self):
        has_scores = "true_score" in self.trace
        if self.quantity == "auto":
            return "score" if has_scores and not self.trace.get("scores_are_logits", True) else "confidence"
        if self.quantity not in ("confidence", "score"):
            raise ValueError(f"quantity must be 'auto', 'confidence' or 'score'; got {self.quantity!r}.")
        if self.quantity == "score" and not has_scores:
            raise ValueError("quantity='score' needs a trace with raw scores (true_score, ...); this one has none.")
        return self.quantity

    def plot(self, ax=None):
        """Draw the panels.

        Parameters
        ----------
        ax : sequence of matplotlib Axes, default=None
            Two axes (loss, confidence), or four when images are shown; None
            creates a figure with one row of panels.

        Returns
        -------
        display : AttackTraceDisplay
        """
        quantity = self._resolve_quantity()
        show_images = self.x_original is not None and self.x_adversarial is not None
        axes, figure = self._validate_plot_panels(ax, n_panels=4 if show_images else 2)
        i = self.sample_index
        trace = self.trace
        iters = np.arange(np.asarray(trace["loss"]).shape[0])

        axes[0].plot(iters, np.asarray(trace["loss"])[:, i], color="C0")
        axes[0].set_xlabel("iteration")
        axes[0].set_ylabel("loss")
        axes[0].set_title(f"{self.attack_name} loss" if self.attack_name else "attack loss")

        axes[1].plot(iters, np.asarray(trace[f"true_{quantity}"])[:, i], label="true class")
        axes[1].plot(iters, np.asarray(trace[f"max_other_{quantity}"])[:, i], label="best other class")
        reject = np.asarray(trace.get(f"reject_{quantity}", np.full_like(iters, np.nan, dtype=float)))
        if reject.ndim == 2 and not np.all(np.isnan(reject[:, i])):
            reject = reject[:, i]
            # A reject score that never moves is a threshold (DNR's last column).
            constant = quantity == "score" and np.all(reject == reject[0])
            label = "reject threshold" if constant else "rejected"
            axes[1].plot(iters, reject, label=label, linestyle="--", color="k" if constant else None)
        axes[1].set_xlabel("iteration")
        if quantity == "score":
            axes[1].set_ylabel("score")
            # Raw scores have no fixed range: give the legend a band above the curves.
            drawn = np.concatenate([line.get_ydata() for line in axes[1].get_lines()])
            low, high = np.nanmin(drawn), np.nanmax(drawn)
            margin = 0.05 * (high - low) if high > low else 0.5
            _legend_above_data(axes[1], low - margin, high + margin)
        else:
            axes[1].set_ylabel("confidence")
            axes[1].set_ylim(-0.02, 1.02)
            axes[1].legend(loc="best")
        self.quantity_ = quantity

        if show_images:
            vmin, vmax = self.clip_values if self.clip_values is not None else (None, None)
            panels = [
                (axes[2], self.x_original, "original", self.y_true, self.y_pred),
                (axes[3], self.x_adversarial, "adversarial", None, self.y_pred_adversarial),
            ]
            for a, x, title, true, predicted in panels:
                a.imshow(_as_image(x, self.image_shape), cmap="gray", vmin=vmin, vmax=vmax)
                a.set_title("\n".join([title, *self._label_lines(true, predicted)]))
                a.set_xticks([])
                a.set_yticks([])
        self.axes_ = axes
        self.figure_ = figure
        return self

    def _label_lines(self, true, predicted):
        lines = [] if true is None else [f"true: {true}"]
        if predicted is not None:
            lines.append("predicted: rejected" if predicted == self.reject_label else f"predicted: {predicted}")
        return lines

    @classmethod
    def from_attack(
        cls, attack, X, y=None, *, sample_index=0, image_shape=None, quantity="auto", predict=None, ax=None
    ):
        """Attack one input of ``X`` with tracing on and plot its trace.

        The attack is not modified: a copy with ``trace=True`` attacks
        ``X[sample_index]``.

        Parameters
        ----------
        attack : skadv attack instance
            Configured attack, e.g. ``PGD(model, eps=0.3)``.
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            Labels (true, or target when the attack is targeted).
        sample_index : int, default=0
            Which input of ``X`` to attack.
        image_shape : tuple of int, default=None
            See the class parameters; defaults to the attack's ``input_shape``.
        quantity : {"auto", "confidence", "score"}, default="auto"
            What the second panel shows; see the class parameters.
        predict : callable, default=None
            Maps rows to labels (e.g. a classifier's or DeepNeuralRejection's
            ``predict``, -1 for rejected); the original's and the adversarial's
            predicted labels are then shown in the images' titles, next to the
            true label ``y[sample_index]``.
        ax : sequence of 4 matplotlib Axes, default=None

        Returns
        -------
        display : AttackTraceDisplay
        """
        cls._check_matplotlib_support("from_attack")
        if not isinstance(attack, BaseAttack):
            raise ValueError(f"attack must be a skadv attack instance; got {attack!r}.")
        params = attack.get_params(deep=False)
        params["trace"] = True
        traced = type(attack)(**params)
        X = np.asarray(X)
        x = X[sample_index : sample_index + 1]
        y_one = None if y is None else np.asarray(y)[sample_index : sample_index + 1]
        x_adv = traced.generate(x, y_one)
        y_pred = y_pred_adversarial = None
        if predict is not None:
            y_pred, y_pred_adversarial = (np.asarray(predict(rows))[0].item() for rows in (x, x_adv))
        return cls(
            trace=traced.trace_,
            sample_index=0,
            x_original=x[0],
            x_adversarial=x_adv[0],
            image_shape=image_shape if image_shape is not None else attack.input_shape,
            clip_values=attack.clip_values,
            attack_name=type(attack).__name__,
            quantity=quantity,
            y_true=None if y_one is None else y_one[0].item(),
            y_pred=y_pred,
            y_pred_adversarial=y_pred_adversarial,
        ).plot(ax=ax)

    @classmethod
    def from_trace(cls, trace, X, X_adv, *, sample_index=0, image_shape=None, ax=None, **kwargs):
        """Plot a stored ``trace_`` with the matching clean and adversarial inputs.

        Parameters
        ----------
        trace : Bunch
            ``attack.trace_`` after ``attack.generate(X)`` with ``trace=True``.
        X, X_adv : array-like of shape (n_samples, n_features)
            The attacked inputs and ``generate``'s output.
        sample_index : int, default=0
        image_shape : tuple of int, default=None
        ax : sequence of 4 matplotlib Axes, default=None
        **kwargs : dict
            Further constructor parameters (``clip_values``, ``attack_name``,
            ``quantity``, ``y_true``, ``y_pred``, ``y_pred_adversarial``).

        Returns
        -------
        display : AttackTraceDisplay
        """
        cls._check_matplotlib_support("from_trace")
        return cls(
            trace=trace,
            sample_index=sample_index,
            x_original=np.asarray(X)[sample_index],
            x_adversarial=np.asarray(X_adv)[sample_index],
            image_shape=image_shape,
            **kwargs,
        ).plot(ax=ax)
