"""Security-evaluation curves: accuracy and detection versus the attack budget."""

import numpy as np

from ..metrics import security_evaluation
from ._base import _DisplayMixin, _legend_above_data


class SecurityEvaluationDisplay(_DisplayMixin):
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
    evasion_rate : ndarray of shape (n_eps,), default=None
        Share of inputs misclassified and not flagged: the attacker's success
        against the defended system.
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
        *,
        eps_values,
        accuracy,
        detection_rate=None,
        accuracy_with_rejection=None,
        evasion_rate=None,
        estimator_name=None,
        attack_name=None,
    ):
        self.eps_values = eps_values
        self.accuracy = accuracy
        self.detection_rate = detection_rate
        self.accuracy_with_rejection = accuracy_with_rejection
        self.evasion_rate = evasion_rate
        self.estimator_name = estimator_name
        self.attack_name = attack_name

    def plot(self, ax=None, *, name=None, legend=True, **kwargs):
        """Draw the curves, with the legend above them.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; None creates a figure.
        name : str, default=None
            Overrides ``estimator_name`` in the legend.
        legend : bool, default=True
            Draw the legend in a band above the curves. False draws none, e.g.
            for one figure legend shared by several panels
            (``figure.legend(*ax.get_legend_handles_labels())``).
        **kwargs : dict
            Passed to every ``ax.plot`` call.

        Returns
        -------
        display : SecurityEvaluationDisplay
        """
        ax, figure, name = self._validate_plot_params(ax=ax, name=name)
        prefix = f"{name}: " if name else ""
        eps = np.asarray(self.eps_values, dtype=float)
        curves = [
            ("accuracy", self.accuracy, "accuracy (no defense)", "o-"),
            ("accuracy_with_rejection", self.accuracy_with_rejection, "accuracy with rejection", "s-"),
            ("detection_rate", self.detection_rate, "detection rate", "^--"),
            ("evasion_rate", self.evasion_rate, "evasion rate", "v:"),
        ]
        self.lines_ = {}
        for key, values, label, style in curves:
            if values is None or np.all(np.isnan(np.asarray(values, dtype=float))):
                continue
            (self.lines_[key],) = ax.plot(eps, np.asarray(values, dtype=float), style, label=prefix + label, **kwargs)
        ax.set_xlabel("attack budget eps")
        ax.set_ylabel("rate")
        ax.grid(True, alpha=0.3)
        if self.attack_name:
            ax.set_title(f"Security evaluation ({self.attack_name})")
        if legend:
            # Rates start near 1 at eps=0, where a legend in the corner would hide them.
            _legend_above_data(ax, -0.02, 1.02)
        else:
            ax.set_ylim(-0.02, 1.02)
        ax.set_yticks(np.linspace(0.0, 1.0, 6))
        self.ax_, self.figure_ = ax, figure
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
        cls._check_matplotlib_support("from_evaluation")
        attack = result.get("attack")
        if attack and "adaptive" in result:
            attack = f"{attack}, {'adaptive' if result['adaptive'] else 'non-adaptive'}"
        disp = cls(
            eps_values=result["eps_values"],
            accuracy=result["accuracy"],
            detection_rate=result.get("detection_rate"),
            accuracy_with_rejection=result.get("accuracy_with_rejection"),
            evasion_rate=result.get("evasion_rate"),
            estimator_name=name,
            attack_name=attack,
        )
        return disp.plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(
        cls, estimator, attack_cls, X, y, eps_values, *, adaptive=True, name=None, ax=None, legend=True,
        **attack_params,
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
        legend : bool, default=True
            Draw the legend (see :meth:`plot`).
        **attack_params : dict
            Passed to the attack.

        Returns
        -------
        display : SecurityEvaluationDisplay
        """
        cls._check_matplotlib_support("from_estimator")
        result = security_evaluation(estimator, attack_cls, X, y, eps_values, adaptive=adaptive, **attack_params)
        return cls.from_evaluation(result, name=name or type(estimator).__name__, ax=ax, legend=legend)
