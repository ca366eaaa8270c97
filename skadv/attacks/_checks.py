"""Indicators of attack failure (Pintor et al., 2022)."""

from numbers import Integral, Real

import numpy as np
from sklearn.utils import Bunch

from .._core import Interval, StrOptions, validate_params, warn_at_caller
from ..exceptions import AttackFailureWarning
from ._base import BaseAttack
from ._geometry import normalize_norm

__all__ = ["AttackFailureWarning", "check_attack_failure"]

# A loss that moved by less than this over a whole run did not move.
_STALL_ATOL = 1e-6

_ADVICE = {
    "unbounded": (
        "an attack with an unbounded budget must break (almost) every input; it does not converge or its "
        "gradients are masked. Try more iterations or restarts, APGD or AutoAttack, loss='margin', and BPDA "
        "or EOT for non-differentiable or randomized parts of the model."
    ),
    "stalled": (
        "the loss never moved on these rows: gradients vanish or are masked (non-differentiable "
        "preprocessing, a saturated softmax, a flat reject region). Try loss='margin' or 'dlr', a start from "
        "the non-adaptive example (AutoAttack's 'two-phase'), the black-box Square attack, or BPDA."
    ),
    "non_adaptive": (
        "the adaptive attack evades the detector less often than the non-adaptive one: it does not optimise "
        "the combined objective. Try AutoAttack (margin on the K+1 scores, 'two-phase' from the non-adaptive "
        "example, orthogonal PGD), more iterations, and EOT for randomized scores."
    ),
    "monotone": (
        "evasion drops while the budget grows: the attack does not converge at larger budgets. Try more "
        "iterations or restarts, APGD's step-size schedule, or start each budget from the previous example."
    ),
    "black_box": (
        "a black-box attack breaks inputs the white-box attack misses: the gradients are masked or "
        "misleading. Try AutoAttack, BPDA for non-differentiable parts, EOT for randomized ones."
    ),
}


def _warn_message(check, finding):
    return f"Attack failure check {check!r}: {finding}; {_ADVICE[check]}"


def warn_failure(message):
    """Issue an :class:`AttackFailureWarning` attributed to the first caller outside skadv.

    The checks run inside other skadv calls (AutoAttack, security_evaluation, the
    displays); the warning points at the user's line whatever the depth.
    """
    warn_at_caller(message, AttackFailureWarning)


def _stalled_rows(loss_range, success):
    """Rows that failed and whose loss never moved."""
    return ~np.asarray(success) & (np.asarray(loss_range) <= _STALL_ATOL)


def _check(name, fired, value, finding):
    return Bunch(fired=bool(fired), value=value, message=_warn_message(name, finding))


def _unbounded_eps(attack, target, X):
    """A budget that reaches every point of the clip box (or a very large one without a box)."""
    width = (
        1e3 if attack.clip_values is None else float(np.max(np.subtract(attack.clip_values[1], attack.clip_values[0])))
    )
    if normalize_norm(getattr(attack, "norm", np.inf)) == np.inf:
        return width
    return width * float(np.sqrt(np.prod(np.asarray(X).shape[1:])))


@validate_params(
    {
        "attack": [BaseAttack],
        "X": ["array-like"],
        "y": ["array-like", None],
        "eps_values": ["array-like", None],
        "evasion_curve": ["array-like", None],
        "black_box": [StrOptions({"auto"}), BaseAttack, None],
        "non_adaptive": ["boolean"],
        "unbounded": ["boolean"],
        "max_samples": [Interval(Integral, 1, None, closed="left"), None],
        "tol": [Interval(Real, 0, 1, closed="both")],
        "stalled_tol": [Interval(Real, 0, 1, closed="both")],
        "warn": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def check_attack_failure(
    attack,
    X,
    y=None,
    *,
    eps_values=None,
    evasion_curve=None,
    black_box="auto",
    non_adaptive=True,
    unbounded=True,
    max_samples=100,
    tol=0.02,
    stalled_tol=0.1,
    warn=True,
):
    """Run the indicators of attack failure (Pintor et al., 2022) on an attack.

    A security evaluation is only as good as its attack. These checks find
    the common ways an attack fails silently (masked or vanishing gradients,
    a loss that ignores the detector, no convergence) so that a weak attack
    is not reported as a robust defense. Evasion is measured on the
    *deployed decision*: against a detector (a target with ``attack_surface()``) a row evades when it is
    misclassified and not flagged / rejected (whatever ``attack.adaptive``
    is); against a plain model when it is misclassified. Each check that
    fires issues an :class:`AttackFailureWarning` naming the check and what
    to try.

    Checks (``value`` in the result):

    - ``"unbounded"``: the attack run with a budget covering the whole clip
      box must reach an evasion of at least ``1 - tol`` (value: that evasion);
    - ``"stalled"``: share of the rows the attack fails on whose loss never
      moved during a run (value); fires above ``stalled_tol``;
    - ``"non_adaptive"`` (adaptive attack on a detector): the same
      attack with ``adaptive=False`` must not evade more often (value:
      adaptive minus non-adaptive evasion); fires below ``-tol``;
    - ``"monotone"`` (when ``eps_values`` are given): evasion must not drop by
      more than ``tol`` as the budget grows (value: the largest drop);
    - ``"black_box"``: a black-box attack must not evade more often (value:
      black-box minus white-box evasion); fires above ``tol``.

    Parameters
    ----------
    attack : skadv attack instance
        The attack to check, with its target and budget (``eps``). It is not
        modified; checks run copies with other parameters.
    X : array-like of shape (n_samples, n_features)
        Clean inputs.
    y : array-like of shape (n_samples,), default=None
        True labels; None uses the model's predictions.
    eps_values : array-like of float, default=None
        Budgets for the monotonicity check; None skips it.
    evasion_curve : array-like of float, default=None
        Evasion already measured at each of ``eps_values`` (e.g. by
        :func:`~skadv.metrics.security_evaluation`); the monotonicity check
        then reads it instead of running the attack at every budget.
    black_box : "auto", attack instance or None, default="auto"
        Black-box attack to compare with: "auto" uses :class:`Square` with the
        attack's budget when the inputs are images, a given attack as it is,
        None skips the check.
    non_adaptive : bool, default=True
        Run the adaptive-versus-non-adaptive check (when it applies).
    unbounded : bool, default=True
        Run the unbounded-budget check.
    max_samples : int or None, default=100
        Check on the first ``max_samples`` rows only (None: all).
    tol : float, default=0.02
        Tolerance of the evasion comparisons (a share of rows).
    stalled_tol : float, default=0.1
        Largest share of failing rows with a stalled loss that is accepted.
    warn : bool, default=True
        Issue an :class:`AttackFailureWarning` for every check that fires.

    Returns
    -------
    report : :class:`~sklearn.utils.Bunch`
        ``evasion`` (of the attack as given), ``checks`` (dict name ->
        Bunch(``fired``, ``value``, ``message``)) and ``fired`` (list of the
        names of the checks that fired).

    References
    ----------
    M. Pintor, L. Demetrio, A. Sotgiu, A. Demontis, N. Carlini, B. Biggio,
    F. Roli. "Indicators of attack failure: debugging and improving
    optimization of adversarial examples", NeurIPS 2022.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from skadv.attacks import PGD, check_attack_failure
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> X = np.random.RandomState(0).rand(30, 4).astype(np.float32)
    >>> report = check_attack_failure(PGD(model, eps=0.1, step_size=0.02, random_state=0), X)
    >>> sorted(report.checks)
    ['stalled', 'unbounded']
    >>> report.fired
    []
    """
    X = np.asarray(X)
    if max_samples is not None:
        X = X[:max_samples]
        y = None if y is None else np.asarray(y)[:max_samples]
    # The deployed decision: the detector counts, whichever way the attack is run.
    judge = _variant(attack, adaptive=True, trace=False)
    target = judge.resolve_target(X)
    judge.check_input_range(X, target=target)
    y_idx = judge.label_indices(target, X, y)
    labels = target.indices_to_labels(y_idx)

    def evasion_of(variant):
        result = variant.run(X, labels)
        return judge.success(target, result.X_adv, y_idx), result

    ok, result = evasion_of(attack)
    checks = {}
    if unbounded and "eps" in attack.get_params():
        big = _unbounded_eps(attack, target, X)
        ok_big, _ = evasion_of(_variant(attack, eps=big))
        checks["unbounded"] = _check(
            "unbounded",
            ok_big.mean() < 1 - tol,
            float(ok_big.mean()),
            f"with eps={big:g} only {ok_big.mean():.1%} of the rows evade",
        )
    if getattr(result, "loss_range", None) is not None:
        stalled = _stalled_rows(result.loss_range, ok)
        share = stalled.sum() / max(int((~ok).sum()), 1)
        checks["stalled"] = _check(
            "stalled",
            share > stalled_tol,
            float(share),
            f"the loss never moved on {int(stalled.sum())} of the {int((~ok).sum())} rows the attack fails on",
        )
    elif "checks" in result and "stalled" in result.checks:
        checks["stalled"] = result.checks["stalled"]
    if non_adaptive and attack.adaptive and target.reject_index is not None:
        ok_na, _ = evasion_of(_variant(attack, adaptive=False))
        gap = float(ok.mean() - ok_na.mean())
        checks["non_adaptive"] = _check(
            "non_adaptive",
            gap < -tol,
            gap,
            f"adaptive evasion {ok.mean():.1%} < non-adaptive evasion {ok_na.mean():.1%}",
        )
    if eps_values is not None and evasion_curve is not None:
        eps_values = np.asarray(eps_values, dtype=float).ravel()
        curve = np.asarray(evasion_curve, dtype=float).ravel()
        if curve.shape != eps_values.shape:
            raise ValueError(
                f"evasion_curve must hold one value per eps; got {curve.size} values for {eps_values.size} budgets."
            )
        order = np.argsort(eps_values, kind="stable")
        eps_values, curve = eps_values[order], curve[order]
    elif eps_values is not None and "eps" in attack.get_params():
        eps_values = np.sort(np.asarray(eps_values, dtype=float))
        curve = np.array([evasion_of(_variant(attack, eps=float(e)))[0].mean() for e in eps_values])
    if eps_values is not None and (evasion_curve is not None or "eps" in attack.get_params()):
        drop = float(np.max(np.maximum.accumulate(curve) - curve))
        checks["monotone"] = _check(
            "monotone",
            drop > tol,
            drop,
            f"evasion over eps={np.round(eps_values, 4).tolist()} is {np.round(curve, 3).tolist()}",
        )
        checks["monotone"].curve = curve
    if isinstance(black_box, str):
        black_box = None
        if _is_image(target, X) and "eps" in attack.get_params():
            from ._square import Square

            black_box = Square(
                attack.target,
                eps=attack.eps,
                norm=getattr(attack, "norm", np.inf),
                random_state=0,
                **_shared_params(attack),
            )
    if black_box is not None:
        ok_bb, _ = evasion_of(black_box)
        gap = float(ok_bb.mean() - ok.mean())
        checks["black_box"] = _check(
            "black_box",
            gap > tol,
            gap,
            f"black-box evasion {ok_bb.mean():.1%} > white-box evasion {ok.mean():.1%} "
            f"({int((ok_bb & ~ok).sum())} rows broken only by the black-box attack)",
        )
    fired = [name for name, check in checks.items() if check.fired]
    if warn:
        for name in fired:
            warn_failure(checks[name].message)
    return Bunch(evasion=float(ok.mean()), checks=checks, fired=fired)


def _variant(attack, **params):
    """A new attack of ``attack``'s class and parameters with ``params`` changed (target shared, not cloned:
    ``sklearn.base.clone`` would turn a fitted skadv estimator into an unfitted one)."""
    return type(attack)(**{**attack.get_params(deep=False), **params})


def _is_image(target, X):
    """Whether inputs reach the model as images ``(channels, height, width)`` (what Square needs)."""
    return np.asarray(X).ndim == 4 or (target.input_shape is not None and len(target.input_shape) == 3)


def _shared_params(attack):
    """The parameters every attack has (box, shape, batching, device, EOT, adaptivity, progress)."""
    names = ("targeted", "adaptive", "clip_values", "input_shape", "batch_size", "device", "eot_samples", "verbose")
    return {name: getattr(attack, name) for name in names}
