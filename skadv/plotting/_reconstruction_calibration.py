"""Mean VAE reconstruction loss per bin of classifier confidence."""

import numpy as np

from ..metrics import calibration_analysis, loss_by_confidence
from ._base import _DisplayMixin


class ReconstructionCalibrationDisplay(_DisplayMixin):
    """Bar plot of the mean VAE reconstruction loss per classifier-confidence bin.

    Build it with :meth:`from_estimator` (which runs :func:`~skadv.calibration_analysis`)
    or :meth:`from_predictions` (which runs :func:`~skadv.metrics.loss_by_confidence`);
    the constructor only stores the numbers.

    Parameters
    ----------
    bin_edges : ndarray of shape (n_bins + 1,)
    mean_loss : ndarray of shape (n_bins,)
        NaN for empty bins (not drawn).
    std_loss : ndarray of shape (n_bins,), default=None
        Drawn as error bars.
    count : ndarray of shape (n_bins,), default=None
        Rows per bin, written above the bars.

    Attributes
    ----------
    analysis : sklearn.utils.Bunch or None
        The binned numbers the ``from_*`` constructors computed: the result of
        :func:`~skadv.calibration_analysis` (with the per-row ``confidence`` and
        ``reconstruction_loss``) for :meth:`from_estimator`, of
        :func:`~skadv.metrics.loss_by_confidence` for :meth:`from_predictions`.
    bars_ : matplotlib BarContainer
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skadv.plotting import ReconstructionCalibrationDisplay
    >>> display = ReconstructionCalibrationDisplay.from_predictions(
    ...     [0.3, 0.55, 0.9, 0.95], [0.8, 0.5, 0.1, 0.2], n_bins=2)
    >>> display.mean_loss.round(2).tolist()
    [0.8, 0.27]
    """

    def __init__(self, *, bin_edges, mean_loss, std_loss=None, count=None):
        self.bin_edges = bin_edges
        self.mean_loss = mean_loss
        self.std_loss = std_loss
        self.count = count
        self.analysis = None

    def plot(self, ax=None, *, error_bars=True, show_counts=True, **kwargs):
        """Draw one bar per confidence bin, as wide as the bin.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; None creates a figure.
        error_bars : bool, default=True
            Draw ± one standard deviation of the loss (when ``std_loss`` is known).
        show_counts : bool, default=True
            Write the number of rows above each bar (when ``count`` is known).
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.bar`.

        Returns
        -------
        display : ReconstructionCalibrationDisplay
        """
        edges = np.asarray(self.bin_edges, dtype=float)
        mean_loss = np.asarray(self.mean_loss, dtype=float)
        filled = ~np.isnan(mean_loss)
        widths = np.diff(edges)
        bar_kwargs = {"align": "edge", "edgecolor": "black", **kwargs}
        if error_bars and self.std_loss is not None:
            bar_kwargs.setdefault("yerr", np.asarray(self.std_loss, dtype=float)[filled])
            bar_kwargs.setdefault("capsize", 3)

        ax, figure, _ = self._validate_plot_params(ax=ax)
        self.bars_ = ax.bar(edges[:-1][filled], mean_loss[filled], width=widths[filled], **bar_kwargs)
        if show_counts and self.count is not None:
            # bar_label writes above the error bar when there is one; the padding keeps it off the cap,
            # the extra head room keeps the tallest label inside the axes.
            ax.bar_label(
                self.bars_, labels=[str(int(c)) for c in np.asarray(self.count)[filled]], fontsize="small", padding=3
            )
            bottom, top = ax.get_ylim()
            ax.set_ylim(bottom, top + 0.08 * (top - bottom))
        ax.set(
            xlabel="Classifier confidence (top probability)",
            ylabel="Mean VAE reconstruction loss",
            xlim=(edges[0], edges[-1]),
        )
        self.ax_, self.figure_ = ax, figure
        return self

    @classmethod
    def _from_analysis(cls, analysis, ax, error_bars, show_counts, kwargs):
        display = cls(
            bin_edges=analysis.bin_edges,
            mean_loss=analysis.mean_loss,
            std_loss=analysis.std_loss,
            count=analysis.count,
        )
        display.analysis = analysis
        return display.plot(ax=ax, error_bars=error_bars, show_counts=show_counts, **kwargs)

    @classmethod
    def from_estimator(
        cls,
        detector,
        X,
        y=None,
        *,
        n_bins=10,
        strategy="uniform",
        ax=None,
        error_bars=True,
        show_counts=True,
        **kwargs,
    ):
        """Run :func:`~skadv.calibration_analysis` with a fitted detector and plot it.

        Parameters
        ----------
        detector : fitted VAEDetector
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            True labels (adds per-bin accuracy to ``analysis``).
        n_bins : int, default=10
        strategy : {'uniform', 'quantile'}, default='uniform'
        ax : matplotlib Axes, default=None
        error_bars, show_counts : bool, default=True
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.bar`.

        Returns
        -------
        display : ReconstructionCalibrationDisplay
        """
        cls._check_matplotlib_support("from_estimator")
        analysis = calibration_analysis(detector, X, y, n_bins=n_bins, strategy=strategy)
        return cls._from_analysis(analysis, ax, error_bars, show_counts, kwargs)

    @classmethod
    def from_predictions(
        cls,
        confidence,
        reconstruction_loss,
        *,
        n_bins=10,
        strategy="uniform",
        ax=None,
        error_bars=True,
        show_counts=True,
        **kwargs,
    ):
        """Bin precomputed confidences and reconstruction losses, and plot them.

        Parameters
        ----------
        confidence : array-like of shape (n_samples,)
            The classifier's top probability per row.
        reconstruction_loss : array-like of shape (n_samples,)
        n_bins : int, default=10
        strategy : {'uniform', 'quantile'}, default='uniform'
        ax : matplotlib Axes, default=None
        error_bars, show_counts : bool, default=True
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.bar`.

        Returns
        -------
        display : ReconstructionCalibrationDisplay
        """
        cls._check_matplotlib_support("from_predictions")
        analysis = loss_by_confidence(confidence, reconstruction_loss, n_bins=n_bins, strategy=strategy)
        return cls._from_analysis(analysis, ax, error_bars, show_counts, kwargs)
