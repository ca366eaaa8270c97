"""Distinct classifier labels over a VAE's sampled reconstructions, clean against adversarial."""

import numpy as np
from sklearn.utils.validation import column_or_1d

from ._base import _DisplayMixin, _legend_above_data


class DistinctLabelsDisplay(_DisplayMixin):
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
    >>> from skadv.plotting import DistinctLabelsDisplay
    >>> display = DistinctLabelsDisplay.from_predictions([1, 1, 1, 2], [1, 2, 3, 3], n_samples=4)
    >>> display.frequencies.round(2).tolist()
    [[0.75, 0.25, 0.0, 0.0], [0.25, 0.25, 0.5, 0.0]]
    """

    def __init__(self, *, counts, n_samples, names=("clean", "adversarial")):
        self.counts = counts
        self.n_samples = n_samples
        self.names = names

    def plot(self, ax=None, *, normalize=True, **kwargs):
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

        ax, figure, _ = self._validate_plot_params(ax=ax)
        width = 0.8 / len(counts)
        self.bars_ = [
            ax.bar(self.values + (i - (len(counts) - 1) / 2) * width, freq, width=width, label=name, **kwargs)
            for i, (freq, name) in enumerate(zip(frequencies, self.names))
        ]
        ax.set_xticks(self.values)
        ax.set(
            xlabel="Number of distinct labels over the reconstructions",
            ylabel="Share of inputs" if normalize else "Number of inputs",
        )
        tallest = frequencies.max() if frequencies.size else 0.0
        _legend_above_data(ax, 0.0, 1.02 * tallest if tallest > 0 else 1.0)
        self.ax_, self.figure_ = ax, figure
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
        cls._check_matplotlib_support("from_estimator")
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
        cls._check_matplotlib_support("from_predictions")
        groups = [np.asarray(counts), np.asarray(counts_adversarial)]
        if n_samples is None:
            n_samples = max(int(g.max()) for g in groups if g.size)
        return cls(counts=groups, n_samples=n_samples, names=names).plot(ax=ax, normalize=normalize, **kwargs)
