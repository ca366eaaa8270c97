"""Matplotlib displays for evaluating detectors under attack.

In scikit-learn's ``*Display`` style: build from data with ``from_estimator``
/ ``from_predictions`` (or the constructor), draw with ``.plot(ax=...)``;
the display keeps ``ax_``, ``figure_`` and the drawn artists. ROC curves of
clean-vs-attacked detection reuse :class:`sklearn.metrics.RocCurveDisplay`
through :func:`plot_detection_roc`.
"""

import numpy as np
from sklearn.metrics import RocCurveDisplay

from .attacks._base import BaseAttack
from .metrics._detection import _clean_vs_attacked
from .metrics._security import _adversarial_scores, security_evaluation

__all__ = [
    "AttackTraceDisplay",
    "ScoreHistogramDisplay",
    "SecurityEvaluationDisplay",
    "plot_detection_roc",
]


def _get_ax(ax):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots()
    return ax


class SecurityEvaluationDisplay:
    """Security-evaluation curve: accuracy and detection versus attack budget.

    Use :meth:`from_estimator` to run :func:`~skadv.metrics.security_evaluation`
    and plot it, or :meth:`from_evaluation` to plot its result.

    Parameters
    ----------
    eps_values : ndarray of shape (n_eps,)
        Attack budgets.
    accuracy : ndarray of shape (n_eps,)
        Accuracy of the classifier alone.
    detection_rate : ndarray of shape (n_eps,), default=None
        Share of inputs flagged by the detector.
    accuracy_with_rejection : ndarray of shape (n_eps,), default=None
        Accuracy of the defended system (see
        :func:`~skadv.metrics.accuracy_with_rejection`).
    estimator_name : str, default=None
        Name shown in the legend.
    attack_name : str, default=None
        Name of the attack, shown in the title.

    Attributes
    ----------
    lines_ : dict of str to matplotlib Line2D
        The drawn curves, by name.
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skadv.plotting import SecurityEvaluationDisplay
    >>> disp = SecurityEvaluationDisplay(
    ...     eps_values=[0, 0.1, 0.2], accuracy=[0.95, 0.4, 0.05],
    ...     detection_rate=[0.05, 0.5, 0.6], accuracy_with_rejection=[0.9, 0.8, 0.6])
    >>> disp = disp.plot()
    >>> sorted(disp.lines_)
    ['accuracy', 'accuracy_with_rejection', 'detection_rate']
    """

    def __init__(
        self,
        eps_values,
        accuracy,
        *,
        detection_rate=None,
        accuracy_with_rejection=None,
        estimator_name=None,
        attack_name=None,
    ):
        self.eps_values = eps_values
        self.accuracy = accuracy
        self.detection_rate = detection_rate
        self.accuracy_with_rejection = accuracy_with_rejection
        self.estimator_name = estimator_name
        self.attack_name = attack_name

    def plot(self, ax=None, *, name=None, **kwargs):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; None creates a figure.
        name : str, default=None
            Overrides ``estimator_name`` in the legend.
        **kwargs : dict
            Passed to every ``ax.plot`` call.

        Returns
        -------
        display : SecurityEvaluationDisplay
        """
        ax = _get_ax(ax)
        name = name if name is not None else self.estimator_name
        prefix = f"{name}: " if name else ""
        eps = np.asarray(self.eps_values, dtype=float)
        curves = [
            ("accuracy", self.accuracy, "accuracy (no defense)", "o-"),
            ("accuracy_with_rejection", self.accuracy_with_rejection, "accuracy with rejection", "s-"),
            ("detection_rate", self.detection_rate, "detection rate", "^--"),
        ]
        self.lines_ = {}
        for key, values, label, style in curves:
            if values is None or np.all(np.isnan(np.asarray(values, dtype=float))):
                continue
            (self.lines_[key],) = ax.plot(eps, np.asarray(values, dtype=float), style, label=prefix + label, **kwargs)
        ax.set_xlabel("attack budget eps")
        ax.set_ylabel("rate")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        if self.attack_name:
            ax.set_title(f"Security evaluation ({self.attack_name})")
        ax.legend(loc="best")
        self.ax_, self.figure_ = ax, ax.figure
        return self

    @classmethod
    def from_evaluation(cls, result, *, name=None, ax=None, **kwargs):
        """Plot the result of :func:`~skadv.metrics.security_evaluation`.

        Parameters
        ----------
        result : Bunch
            Returned by :func:`~skadv.metrics.security_evaluation`.
        name : str, default=None
            Legend name.
        ax : matplotlib Axes, default=None
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : SecurityEvaluationDisplay
        """
        attack = result.get("attack")
        if attack and "adaptive" in result:
            attack = f"{attack}, {'adaptive' if result['adaptive'] else 'non-adaptive'}"
        disp = cls(
            result["eps_values"],
            result["accuracy"],
            detection_rate=result.get("detection_rate"),
            accuracy_with_rejection=result.get("accuracy_with_rejection"),
            estimator_name=name,
            attack_name=attack,
        )
        return disp.plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(
        cls, estimator, attack_cls, X, y, eps_values, *, adaptive=True, name=None, ax=None, **attack_params
    ):
        """Run :func:`~skadv.metrics.security_evaluation` and plot it.

        Parameters
        ----------
        estimator : fitted skadv estimator, torch.nn.Module or fitted skorch net
        attack_cls : skadv attack class or instance
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        eps_values : array-like of float
        adaptive : bool, default=True
        name : str, default=None
            Legend name; defaults to the estimator's class name.
        ax : matplotlib Axes, default=None
        **attack_params : dict
            Passed to the attack.

        Returns
        -------
        display : SecurityEvaluationDisplay
        """
        result = security_evaluation(estimator, attack_cls, X, y, eps_values, adaptive=adaptive, **attack_params)
        return cls.from_evaluation(result, name=name or type(estimator).__name__, ax=ax)


class ScoreHistogramDisplay:
    """Histograms of a detector's adversarial scores on clean and attacked inputs.

    Parameters
    ----------
    scores_clean : ndarray of shape (n_clean,)
        Adversarial scores of clean inputs.
    scores_attacked : ndarray of shape (n_attacked,)
        Adversarial scores of attacked inputs.
    threshold : float, default=None
        Detection threshold, drawn as a vertical line.
    estimator_name : str, default=None
        Shown in the title.

    Attributes
    ----------
    hist_clean_, hist_attacked_ : tuple
        What ``ax.hist`` returned for each set.
    threshold_line_ : matplotlib Line2D or None
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skadv.plotting import ScoreHistogramDisplay
    >>> rng = np.random.RandomState(0)
    >>> disp = ScoreHistogramDisplay.from_predictions(
    ...     rng.normal(0, 1, 100), rng.normal(2, 1, 100), threshold=1.5)
    >>> disp.threshold_line_ is not None
    True
    """

    def __init__(self, scores_clean, scores_attacked, *, threshold=None, estimator_name=None):
        self.scores_clean = scores_clean
        self.scores_attacked = scores_attacked
        self.threshold = threshold
        self.estimator_name = estimator_name

    def plot(self, ax=None, *, bins=30, density=True, log_scale=False, name=None):
        """Draw both histograms on shared bins.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
        bins : int, default=30
            Number of bins spanning both score sets.
        density : bool, default=True
            Normalise each histogram so that its area is 1 (sets may differ
            in size). On a linear axis a bar's height is the share of scores
            in its bin per unit of score; with ``log_scale`` it is the share
            per decade (per unit of ``log10(score)``), so that bar areas on
            the logarithmic axis are shares and wide bins at large scores are
            not flattened.
        log_scale : bool, default=False
            Logarithmic x axis with log-spaced bins; every score must be
            positive (a ValueError is raised otherwise).
        name : str, default=None
            Overrides ``estimator_name``.

        Returns
        -------
        display : ScoreHistogramDisplay
        """
        clean = np.asarray(self.scores_clean, dtype=float)
        attacked = np.asarray(self.scores_attacked, dtype=float)
        both = np.r_[clean, attacked]
        if log_scale and not np.all(both > 0):
            raise ValueError(
                f"log_scale=True needs positive scores; {np.sum(~(both > 0))} of {both.size} are not. "
                "Shift or clip the scores, or use log_scale=False."
            )
        ax = _get_ax(ax)
        if log_scale:
            lo, hi = both.min(), both.max()
            if lo == hi:
                lo, hi = lo / 2, hi * 2
            edges = np.geomspace(lo, hi, bins + 1)
            ax.set_xscale("log")
        else:
            edges = np.histogram_bin_edges(both, bins=bins)
        hists = []
        for scores, label in [(clean, "clean"), (attacked, "attacked")]:
            if density and log_scale:
                # Log-spaced bins all span the same number of decades: weighting every score
                # by 1 / (n * decades per bin) gives the density per decade.
                weights = np.full(scores.size, bins / (scores.size * np.log10(hi / lo)))
                hists.append(ax.hist(scores, bins=edges, weights=weights, alpha=0.6, label=label))
            else:
                hists.append(ax.hist(scores, bins=edges, density=density, alpha=0.6, label=label))
        self.hist_clean_, self.hist_attacked_ = hists
        self.threshold_line_ = None
        if self.threshold is not None:
            self.threshold_line_ = ax.axvline(self.threshold, color="k", linestyle="--", label="threshold")
        ax.set_xlabel("adversarial score")
        if not density:
            ax.set_ylabel("count")
        else:
            ax.set_ylabel("density per decade" if log_scale else "density")
        name = name if name is not None else self.estimator_name
        if name:
            ax.set_title(name)
        ax.legend(loc="best")
        self.ax_, self.figure_ = ax, ax.figure
        return self

    @classmethod
    def from_predictions(cls, scores_clean, scores_attacked, *, threshold=None, name=None, ax=None, **kwargs):
        """Plot given scores.

        Parameters
        ----------
        scores_clean, scores_attacked : array-like
            Adversarial scores (higher = more adversarial).
        threshold : float, default=None
        name : str, default=None
        ax : matplotlib Axes, default=None
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : ScoreHistogramDisplay
        """
        _clean_vs_attacked(scores_clean, scores_attacked)  # validates
        return cls(scores_clean, scores_attacked, threshold=threshold, estimator_name=name).plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(cls, estimator, X_clean, X_attacked, *, name=None, ax=None, **kwargs):
        """Score clean and attacked inputs with a fitted detector and plot them.

        The detector's ``threshold_`` is drawn when it has one.

        Parameters
        ----------
        estimator : fitted skadv detector
        X_clean : array-like of shape (n_clean, n_features)
        X_attacked : array-like of shape (n_attacked, n_features)
        name : str, default=None
            Defaults to the estimator's class name.
        ax : matplotlib Axes, default=None
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : ScoreHistogramDisplay
        """
        return cls.from_predictions(
            _adversarial_scores(estimator, X_clean),
            _adversarial_scores(estimator, X_attacked),
            threshold=getattr(estimator, "threshold_", None),
            name=name or type(estimator).__name__,
            ax=ax,
            **kwargs,
        )


def plot_detection_roc(
    estimator=None,
    X_clean=None,
    X_attacked=None,
    *,
    scores_clean=None,
    scores_attacked=None,
    name=None,
    ax=None,
    **kwargs,
):
    """ROC curve of clean-vs-attacked detection, drawn by sklearn's RocCurveDisplay.

    Pass a fitted detector with clean and attacked inputs, or the two score
    arrays directly. Attacked inputs are the positives.

    Parameters
    ----------
    estimator : fitted skadv detector, default=None
    X_clean, X_attacked : array-like, default=None
        Inputs to score with ``estimator``.
    scores_clean, scores_attacked : array-like, default=None
        Adversarial scores, used when ``estimator`` is None.
    name : str, default=None
        Legend name.
    ax : matplotlib Axes, default=None
    **kwargs : dict
        Passed to :meth:`sklearn.metrics.RocCurveDisplay.from_predictions`.

    Returns
    -------
    display : sklearn.metrics.RocCurveDisplay

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skadv.plotting import plot_detection_roc
    >>> disp = plot_detection_roc(scores_clean=[0.1, 0.2, 0.3], scores_attacked=[0.25, 0.9])
    >>> round(disp.roc_auc, 3)
    0.833
    """
    if estimator is not None:
        if X_clean is None or X_attacked is None:
            raise ValueError("With an estimator, pass X_clean and X_attacked.")
        scores_clean = _adversarial_scores(estimator, X_clean)
        scores_attacked = _adversarial_scores(estimator, X_attacked)
        name = name or type(estimator).__name__
    elif scores_clean is None or scores_attacked is None:
        raise ValueError("Pass an estimator with X_clean and X_attacked, or scores_clean and scores_attacked.")
    y_true, y_score = _clean_vs_attacked(scores_clean, scores_attacked)
    return RocCurveDisplay.from_predictions(y_true, y_score, pos_label=1, name=name, ax=ax, **kwargs)


def _as_image(x, image_shape):
    x = np.asarray(x, dtype=float)
    if image_shape is not None:
        x = x.reshape(image_shape)
    else:
        side = int(round(np.sqrt(x.size)))
        if side * side == x.size and x.ndim == 1:
            x = x.reshape(side, side)
    x = np.squeeze(x)
    if x.ndim == 3 and x.shape[0] in (1, 3, 4) and x.shape[-1] not in (1, 3, 4):
        x = np.moveaxis(x, 0, -1)  # channels first -> last for imshow
    if x.ndim == 1:
        x = x[None, :]
    return x


class AttackTraceDisplay:
    """Trace of one input's attack: loss and confidences per iteration, and the images.

    The figure of the seeds (secml's DNR notebook): the attack's objective
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
        trace,
        *,
        sample_index=0,
        x_original=None,
        x_adversarial=None,
        image_shape=None,
        clip_values=(0, 1),
        attack_name=None,
        quantity="auto",
    ):
        self.trace = trace
        self.sample_index = sample_index
        self.x_original = x_original
        self.x_adversarial = x_adversarial
        self.image_shape = image_shape
        self.clip_values = clip_values
        self.attack_name = attack_name
        self.quantity = quantity

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
        import matplotlib.pyplot as plt

        quantity = self._resolve_quantity()
        show_images = self.x_original is not None and self.x_adversarial is not None
        n_panels = 4 if show_images else 2
        if ax is None:
            fig, ax = plt.subplots(1, n_panels, figsize=(3.2 * n_panels, 3))
        axes = np.ravel(np.asarray(ax, dtype=object))
        if axes.size != n_panels:
            raise ValueError(f"ax must hold {n_panels} axes; got {axes.size}.")
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
        else:
            axes[1].set_ylabel("confidence")
            axes[1].set_ylim(-0.02, 1.02)
        axes[1].legend(loc="best")
        self.quantity_ = quantity

        if show_images:
            vmin, vmax = self.clip_values if self.clip_values is not None else (None, None)
            for a, x, title in [(axes[2], self.x_original, "original"), (axes[3], self.x_adversarial, "adversarial")]:
                a.imshow(_as_image(x, self.image_shape), cmap="gray", vmin=vmin, vmax=vmax)
                a.set_title(title)
                a.set_xticks([])
                a.set_yticks([])
        self.axes_ = axes
        self.figure_ = axes[0].figure
        return self

    @classmethod
    def from_attack(cls, attack, X, y=None, *, sample_index=0, image_shape=None, quantity="auto", ax=None):
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
        ax : sequence of 4 matplotlib Axes, default=None

        Returns
        -------
        display : AttackTraceDisplay
        """
        if not isinstance(attack, BaseAttack):
            raise ValueError(f"attack must be a skadv attack instance; got {attack!r}.")
        params = attack.get_params(deep=False)
        params["trace"] = True
        traced = type(attack)(**params)
        X = np.asarray(X)
        x = X[sample_index : sample_index + 1]
        y_one = None if y is None else np.asarray(y)[sample_index : sample_index + 1]
        x_adv = traced.generate(x, y_one)
        return cls(
            traced.trace_,
            sample_index=0,
            x_original=x[0],
            x_adversarial=x_adv[0],
            image_shape=image_shape if image_shape is not None else attack.input_shape,
            clip_values=attack.clip_values,
            attack_name=type(attack).__name__,
            quantity=quantity,
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
            ``quantity``).

        Returns
        -------
        display : AttackTraceDisplay
        """
        return cls(
            trace,
            sample_index=sample_index,
            x_original=np.asarray(X)[sample_index],
            x_adversarial=np.asarray(X_adv)[sample_index],
            image_shape=image_shape,
            **kwargs,
        ).plot(ax=ax)
