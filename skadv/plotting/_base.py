"""What every skadv display shares: the matplotlib check and the axes it draws on."""

import numpy as np


def check_matplotlib_support(caller_name):
    """Raise an ImportError naming ``caller_name`` when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{caller_name} requires matplotlib. Install it with `pip install matplotlib`."
        ) from exc


class _DisplayMixin:
    """Axes (or a row of panels) and matplotlib checks for skadv's ``*Display`` classes.

    A display stores its numbers in a keyword-only constructor, draws them
    with ``plot(self, ax=None, *, ...)`` and keeps ``ax_`` (or ``axes_``) and
    ``figure_``; its ``from_*`` class methods compute the numbers and call
    ``plot``. They call :meth:`_check_matplotlib_support` first, so that a
    missing matplotlib fails before an expensive computation.
    """

    @classmethod
    def _check_matplotlib_support(cls, method):
        check_matplotlib_support(f"{cls.__name__}.{method}")

    def _validate_plot_params(self, *, ax=None, name=None):
        """``(ax, figure, name)``: the given axes or a new figure's, and the legend/title name."""
        self._check_matplotlib_support("plot")
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        name = getattr(self, "estimator_name", None) if name is None else name
        return ax, ax.figure, name

    def _validate_plot_panels(self, ax, *, n_panels, panel_size=(3.2, 3.0)):
        """``(axes, figure)``: ``n_panels`` given axes, or a new figure with one row of them."""
        self._check_matplotlib_support("plot")
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(1, n_panels, figsize=(panel_size[0] * n_panels, panel_size[1]))
        axes = np.ravel(np.asarray(ax, dtype=object))
        if axes.size != n_panels:
            raise ValueError(f"ax must hold {n_panels} axes; got {axes.size}.")
        return axes, axes[0].figure


def _legend_above_data(ax, data_bottom, data_top, **legend_kwargs):
    """Draw the legend in a band above the data, so that no curve or bar runs under it.

    The legend goes to the top of the axes and the y limits grow to leave it
    its own band: ``data_bottom`` to ``data_top`` fill the rest. The band is
    measured on the drawn legend (its height and its padding from the top),
    so it fits the figure size and font; it is a quarter wider than measured
    because a later ``tight_layout`` (titles, a suptitle) shrinks the axes,
    while the legend keeps its size.
    """
    legend = ax.legend(**{"loc": "upper right", **legend_kwargs})
    axes_box, legend_box = ax.get_window_extent(), legend.get_window_extent()
    share = (axes_box.y1 - legend_box.y0) / max(axes_box.height, 1.0)
    share = min(1.25 * share + 0.03, 0.6)  # never squeeze the data below 40 % of the axes
    ax.set_ylim(data_bottom, data_bottom + (data_top - data_bottom) / (1.0 - share))
    return legend
