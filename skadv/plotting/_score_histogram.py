"""Histograms of a detector's adversarial scores on clean and attacked inputs."""

import numpy as np

from ..metrics import adversarial_scores, clean_vs_attacked, detection_threshold
from ._base import _DisplayMixin, _legend_above_data

# log_scale="auto" draws a logarithmic axis when the positive scores span this many decades.
_AUTO_LOG_DECADES = 2.0


class ScoreHistogramDisplay(_DisplayMixin):
    """Histograms of a detector's adversarial scores on clean and attacked inputs.

    Parameters
    ----------
    scores_clean : ndarray of shape (n_clean,)
        Adversarial scores of clean inputs.
    scores_attacked : ndarray of shape (n_attacked,)
        Adversarial scores of attacked inputs.
    threshold : float, default=None
        Detection threshold on the same scale, drawn as a vertical line.
    flagged_above : bool, default=True
        Which side of the threshold is flagged: above for adversarial scores
        (higher = more adversarial), below for ``score_samples`` (higher = more
        normal, e.g. :class:`~skadv.DeepNeuralRejection`'s best class score,
        rejected below its ``threshold``). Named in the threshold's legend entry.
    estimator_name : str, default=None
        Shown in the title.
    score_name : str, default="adversarial score"
        Label of the x axis: what the scores are.

    Attributes
    ----------
    hist_clean_, hist_attacked_ : tuple
        What ``ax.hist`` returned for each set.
    threshold_line_ : matplotlib Line2D or None
    log_scale_ : bool
        Whether the x axis is logarithmic (``log_scale`` with ``"auto"`` resolved).
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

    def __init__(
        self,
        *,
        scores_clean,
        scores_attacked,
        threshold=None,
        flagged_above=True,
        estimator_name=None,
        score_name="adversarial score",
    ):
        self.scores_clean = scores_clean
        self.scores_attacked = scores_attacked
        self.threshold = threshold
        self.flagged_above = flagged_above
        self.estimator_name = estimator_name
        self.score_name = score_name

    def _resolve_log_scale(self, log_scale, scores):
        if isinstance(log_scale, str):
            if log_scale != "auto":
                raise ValueError(f"log_scale must be True, False or 'auto'; got {log_scale!r}.")
            positive = np.all(scores > 0) and (self.threshold is None or self.threshold > 0)
            return bool(positive and np.log10(scores.max() / scores.min()) >= _AUTO_LOG_DECADES)
        if log_scale and not np.all(scores > 0):
            raise ValueError(
                f"log_scale=True needs positive scores; {np.sum(~(scores > 0))} of {scores.size} are not. "
                "Shift or clip the scores, or use log_scale=False."
            )
        return bool(log_scale)

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
            in its bin per unit of score; with a logarithmic axis it is the
            share per decade (per unit of ``log10(score)``), so that bar
            areas on the logarithmic axis are shares and wide bins at large
            scores are not flattened.
        log_scale : bool or "auto", default=False
            Logarithmic x axis with log-spaced bins; every score must be
            positive (a ValueError is raised otherwise). ``"auto"`` chooses
            it when every score (and the threshold) is positive and the
            scores span two decades or more, as scores piled up near zero
            with a long tail do (KL divergences, reconstruction errors); a
            linear axis would squeeze the clean scores into its first bin.
        name : str, default=None
            Overrides ``estimator_name``.

        Returns
        -------
        display : ScoreHistogramDisplay
        """
        clean = np.asarray(self.scores_clean, dtype=float)
        attacked = np.asarray(self.scores_attacked, dtype=float)
        both = np.r_[clean, attacked]
        log_scale = self._resolve_log_scale(log_scale, both)
        ax, figure, name = self._validate_plot_params(ax=ax, name=name)
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
            side = "above" if self.flagged_above else "below"
            self.threshold_line_ = ax.axvline(
                self.threshold, color="k", linestyle="--", label=f"threshold (flagged {side})"
            )
        ax.set_xlabel(self.score_name)
        if not density:
            ax.set_ylabel("count")
        else:
            ax.set_ylabel("density per decade" if log_scale else "density")
        if name:
            ax.set_title(name)
        tallest = max(hists[0][0].max(), hists[1][0].max())
        _legend_above_data(ax, 0.0, 1.02 * tallest if tallest > 0 else 1.0)
        self.log_scale_ = log_scale
        self.ax_, self.figure_ = ax, figure
        return self

    @classmethod
    def from_predictions(
        cls,
        scores_clean,
        scores_attacked,
        *,
        threshold=None,
        flagged_above=True,
        name=None,
        score_name="adversarial score",
        ax=None,
        **kwargs,
    ):
        """Plot given scores.

        Parameters
        ----------
        scores_clean, scores_attacked : array-like
            Scores of clean and attacked inputs, e.g. adversarial scores
            (higher = more adversarial).
        threshold : float, default=None
            On the scores' scale (e.g. :func:`~skadv.metrics.detection_threshold`).
        flagged_above : bool, default=True
            Whether rows scoring above ``threshold`` are flagged (False: below).
        name : str, default=None
        score_name : str, default="adversarial score"
            Label of the x axis.
        ax : matplotlib Axes, default=None
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : ScoreHistogramDisplay
        """
        cls._check_matplotlib_support("from_predictions")
        clean_vs_attacked(scores_clean, scores_attacked)  # validates
        disp = cls(
            scores_clean=scores_clean,
            scores_attacked=scores_attacked,
            threshold=threshold,
            flagged_above=flagged_above,
            estimator_name=name,
            score_name=score_name,
        )
        return disp.plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(cls, estimator, X_clean, X_attacked, *, name=None, ax=None, **kwargs):
        """Score clean and attacked inputs with a fitted detector and plot them.

        A detector with ``adversarial_score`` (each skadv detector) is plotted
        on that scale with :func:`~skadv.metrics.detection_threshold`, rows
        above it flagged. Any other estimator (e.g.
        :class:`~skadv.DeepNeuralRejection`, whose ``score_samples`` is its best
        class score) is plotted on its ``score_samples``, rows below the
        threshold flagged: DNR's threshold is then drawn at its ``threshold``
        parameter, with the sign it has in every other figure (the class
        scores of :class:`AttackTraceDisplay`) and in ``set_params``.

        Parameters
        ----------
        estimator : fitted skadv detector or DeepNeuralRejection
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
        cls._check_matplotlib_support("from_estimator")
        threshold = detection_threshold(estimator)
        if hasattr(estimator, "adversarial_score"):
            flagged_above, score_name = True, "adversarial score"
            scores = [adversarial_scores(estimator, X) for X in (X_clean, X_attacked)]
        else:
            # adversarial_scores is minus score_samples here, and the threshold with it.
            flagged_above, score_name = False, "score_samples (higher = more normal)"
            scores = [-adversarial_scores(estimator, X) for X in (X_clean, X_attacked)]
            threshold = None if threshold is None else -threshold
        return cls.from_predictions(
            *scores,
            threshold=threshold,
            flagged_above=flagged_above,
            name=name or type(estimator).__name__,
            score_name=score_name,
            ax=ax,
            **kwargs,
        )
