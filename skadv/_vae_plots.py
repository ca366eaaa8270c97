"""Displays of :class:`~skadv.VAEDetector`'s analyses, in scikit-learn's ``*Display`` style."""

import numpy as np
from sklearn.utils.validation import column_or_1d

from ._vae import calibration_analysis, calibration_analysis_from_predictions


def _axes(ax):
    """``(ax, figure)``: the given axes, or a new figure's."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots()
    return ax, ax.figure


class DistinctLabelsDisplay:
    """Bar plot of the number of distinct classifier labels over K reconstructions, per group.

    Clean inputs mostly get one label over their K sampled VAE reconstructions;
    adversarial inputs get several. Build it with :meth:`from_estimator` or
    :meth:`from_predictions`; the constructor only stores the numbers.

    Parameters
    ----------
    counts : list of ndarray of int
        Per group, the number of distinct labels of each row (between 1 and ``n_samples``).
    n_samples : int
        K, the number of reconstructions per row (sets the x-axis range).
    names : list of str
        One name per group, shown in the legend.

    Attributes
    ----------
    values : ndarray of shape (n_samples,)
        The possible counts ``1, ..., K``.
    frequencies : ndarray of shape (n_groups, n_samples)
        Per group, the share (or the number, when plotted with ``normalize=False``) of
        rows with each count.
    bars_ : list of matplotlib BarContainer
        One per group.
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skadv import DistinctLabelsDisplay
    >>> display = DistinctLabelsDisplay.from_predictions([1, 1, 1, 2], [1, 2, 3, 3], n_samples=4)
    >>> display.frequencies.round(2).tolist()
    [[0.75, 0.25, 0.0, 0.0], [0.25, 0.25, 0.5, 0.0]]
    """

    def __init__(self, *, counts, n_samples, names=("clean", "adversarial")):
        self.counts = counts
        self.n_samples = n_samples
        self.names = names

    def plot(self, *, ax=None, normalize=True, **kwargs):
        """Draw grouped bars, one group of bars per number of distinct labels.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; None creates a figure.
        normalize : bool, default=True
            Bar heights as shares of each group's rows (groups of different sizes compare);
            False plots row counts.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.bar`.

        Returns
        -------
        display : DistinctLabelsDisplay
        """
        counts = [column_or_1d(np.asarray(c)).astype(int) for c in self.counts]
        if len(counts) != len(self.names):
            raise ValueError(f"Got {len(counts)} groups of counts but {len(self.names)} names.")
        n_samples = int(self.n_samples)
        if any(c.size and (c.min() < 1 or c.max() > n_samples) for c in counts):
            raise ValueError(f"Distinct-label counts must lie between 1 and n_samples={n_samples}.")
        self.values = np.arange(1, n_samples + 1)
        frequencies = np.array(
            [np.bincount(c - 1, minlength=n_samples)[:n_samples] for c in counts], dtype=float
        )
        if normalize:
            frequencies /= np.maximum(frequencies.sum(axis=1, keepdims=True), 1)
        self.frequencies = frequencies

        self.ax_, self.figure_ = _axes(ax)
        width = 0.8 / len(counts)
        self.bars_ = [
            self.ax_.bar(
                self.values + (i - (len(counts) - 1) / 2) * width, freq, width=width, label=name, **kwargs
            )
            for i, (freq, name) in enumerate(zip(frequencies, self.names))
        ]
        self.ax_.set_xticks(self.values)
        self.ax_.set(
            xlabel="Number of distinct labels over the reconstructions",
            ylabel="Share of inputs" if normalize else "Number of inputs",
        )
        self.ax_.legend()
        return self

    @classmethod
    def from_estimator(
        cls, detector, X, X_adversarial, *, names=("clean", "adversarial"), ax=None, normalize=True, **kwargs
    ):
        """Count distinct labels with a fitted :class:`~skadv.VAEDetector` and plot them.

        Parameters
        ----------
        detector : fitted VAEDetector
        X : array-like of shape (n_samples, n_features)
            Clean inputs.
        X_adversarial : array-like of shape (n_adversarial, n_features)
            Adversarial (or any other) inputs to compare.
        names : tuple of str, default=('clean', 'adversarial')
        ax : matplotlib Axes, default=None
        normalize : bool, default=True
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.bar`.

        Returns
        -------
        display : DistinctLabelsDisplay
        """
        counts = [detector.distinct_labels(X), detector.distinct_labels(X_adversarial)]
        return cls(counts=counts, n_samples=detector.n_samples, names=names).plot(
            ax=ax, normalize=normalize, **kwargs
        )

    @classmethod
    def from_predictions(
        cls,
        counts,
        counts_adversarial,
        *,
        n_samples=None,
        names=("clean", "adversarial"),
        ax=None,
        normalize=True,
        **kwargs,
    ):
        """Plot precomputed distinct-label counts (e.g. from :meth:`VAEDetector.distinct_labels`).

        Parameters
        ----------
        counts : array-like of shape (n_samples,)
            Counts of the clean inputs.
        counts_adversarial : array-like of shape (n_adversarial,)
            Counts of the adversarial inputs.
        n_samples : int, default=None
            K; None uses the largest count seen.
        names : tuple of str, default=('clean', 'adversarial')
        ax : matplotlib Axes, default=None
        normalize : bool, default=True
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.bar`.

        Returns
        -------
        display : DistinctLabelsDisplay
        """
        groups = [np.asarray(counts), np.asarray(counts_adversarial)]
        if n_samples is None:
            n_samples = max(int(g.max()) for g in groups if g.size)
        return cls(counts=groups, n_samples=n_samples, names=names).plot(ax=ax, normalize=normalize, **kwargs)


class ReconstructionCalibrationDisplay:
    """Bar plot of the mean VAE reconstruction loss per classifier-confidence bin.

    Build it with :meth:`from_estimator` (which runs :func:`~skadv.calibration_analysis`)
    or :meth:`from_predictions`; the constructor only stores the numbers.

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
        The full result of the calibration analysis (set by the ``from_*`` constructors).
    bars_ : matplotlib BarContainer
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skadv import ReconstructionCalibrationDisplay
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

    def plot(self, *, ax=None, error_bars=True, show_counts=True, **kwargs):
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

        self.ax_, self.figure_ = _axes(ax)
        self.bars_ = self.ax_.bar(edges[:-1][filled], mean_loss[filled], width=widths[filled], **bar_kwargs)
        if show_counts and self.count is not None:
            self.ax_.bar_label(
                self.bars_, labels=[str(int(c)) for c in np.asarray(self.count)[filled]], fontsize="small"
            )
        self.ax_.set(
            xlabel="Classifier confidence (top probability)",
            ylabel="Mean VAE reconstruction loss",
            xlim=(edges[0], edges[-1]),
        )
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
        analysis = calibration_analysis_from_predictions(
            confidence, reconstruction_loss, n_bins=n_bins, strategy=strategy
        )
        return cls._from_analysis(analysis, ax, error_bars, show_counts, kwargs)
