"""AutoAttack-style ensemble: per input, the first success of several attacks."""

import sys
import time
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import Bunch, check_random_state

from .._core import Interval
from ._apgd import APGD
from ._base import BaseAttack, progress_bar
from ._checks import _is_image, _shared_params, _stalled_rows, _warn_message, warn_failure
from ._docs import fill_doc
from ._geometry import NORM_CONSTRAINT, normalize_norm
from ._orthogonal import OrthogonalPGD
from ._run import Run
from ._square import Square

__all__ = ["AutoAttack"]

_MEMBERS = (
    "apgd-ce", "apgd-dlr", "apgd-margin", "two-phase", "escape", "guided", "orthogonal", "selective", "square"
)
_DEFAULT_PLAIN = ("apgd-ce", "apgd-dlr", "square")
_DEFAULT_ADAPTIVE = ("apgd-ce", "apgd-margin", "two-phase", "escape", "orthogonal", "square")
# Share of all rows that the black-box member may break after the white-box members
# before the ensemble reports the white-box attacks as failing.
_BLACK_BOX_TOL = 0.02
# Share of the rows left unbroken whose loss never moved before "stalled" is reported.
_STALLED_TOL = 0.1


@fill_doc
class AutoAttack(BaseAttack):
    """Ensemble attack keeping, per input, the first example that succeeds on the deployed decision.

    Runs its member attacks in order, each only on the inputs that no earlier
    member broke, and keeps per input the first successful example. Success
    is judged on the *deployed decision*: against a skadv estimator attacked
    adaptively, misclassified **and** not flagged / not rejected; otherwise
    (plain model, or ``adaptive=False``) misclassified (or classified as the
    target when ``targeted``). The result is therefore never weaker, per
    input, than any member run alone on the same inputs. Inputs no member
    breaks get the first member's output.

    Members (``attacks``), all with the ensemble's ``eps``, ``norm`` and
    common parameters:

    - ``"apgd-ce"``, ``"apgd-dlr"``, ``"apgd-margin"``: :class:`APGD` with that
      loss (``max_iter``, ``n_restarts``); against a skadv estimator the losses
      are computed on its K+1 adaptive scores;
    - ``"two-phase"``: :class:`APGD` with CE on the classifier alone (the
      non-adaptive example), then adaptive :class:`APGD` with the margin loss
      started from it. It leaves a flat reject region from the outside: DNR's
      RBF scores give vanishing gradients far from its support vectors, where
      an adaptive attack started at the clean input stalls;
    - ``"escape"``: adaptive :class:`APGD` with ``loss="escape"`` started at
      the clean input (no random start), on the target's escape scores
      (:attr:`~skadv.utils.AttackSurface.escape`): where a rejecting
      detector's scores are flat, they still point towards an accepted wrong
      class. Skipped when the target provides no escape scores (DNR does);
    - ``"guided"``: adaptive :class:`APGD` with the margin loss started, for
      each input, from the nearest (L2) of the ensemble's own inputs that has
      another label and is accepted and classified correctly, projected
      onto the ball: a start inside another class's accepted region, where
      a rejecting detector's scores still have gradients (a feature-space
      target in input space; not a default member: on the demo's DNR it
      broke no input the others missed);
    - ``"orthogonal"``, ``"selective"``: :class:`OrthogonalPGD` (step
      ``eps / 10``, ``max_iter`` steps); skipped when there is no detector;
    - ``"square"``: the black-box :class:`Square` (``square_max_iter``
      queries), run on every row the white-box members left unbroken and
      only on those (a row whose white-box loss never moved is where it is
      needed most; whether it breaks any other row is known only by running
      it); skipped for non-image inputs;
    - an attack instance: run as given on the remaining inputs.

    Default: ``("apgd-ce", "apgd-margin", "two-phase", "escape", "orthogonal", "square")``
    against a skadv estimator attacked adaptively, ``("apgd-ce", "apgd-dlr",
    "square")`` otherwise (``apgd-dlr`` becomes ``apgd-margin`` with fewer
    than three outputs).

    With ``x_init`` (e.g. a non-adaptive example) passed to :meth:`run`,
    the given points are judged first (after clipping and projection onto
    the ball) and the members that start from a point start from them.

    :meth:`run` also reports the per-call attack-failure checks (see
    :func:`check_attack_failure`): rows left unbroken whose loss never moved
    in any white-box member ("stalled"), and rows the black-box member broke
    after every white-box member failed ("black_box"); each issues an
    :class:`AttackFailureWarning` when it fires.

    Parameters
    ----------
    target : torch.nn.Module, fitted skorch NeuralNet or fitted estimator with ``attack_surface()``
        Model to attack; see :class:`FGSM`.

    eps : float, default=0.3
        Radius of the perturbation ball.

    norm : {np.inf, 2, "inf"}, default=np.inf
        Norm of the perturbation ball.

    attacks : tuple of str or attack instances, default=None
        Members, in order (see above); None chooses by target.

    max_iter : int, default=100
        Iterations of each white-box member (and of each phase of
        ``"two-phase"``).

    n_restarts : int, default=1
        Restarts of the APGD members.

    square_max_iter : int, default=1000
        Query budget of the Square member.

    random_state : int, RandomState instance or None, default=None
        Seeds every member. Pass an int for reproducible output.

%(common_params)s

    Attributes
    ----------
    n_iter_ : int
        Set by :meth:`generate`: the members' ``n_iter`` summed.

    See Also
    --------
    check_attack_failure : The full set of attack-failure checks.

    References
    ----------
    F. Croce, M. Hein. "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks", ICML 2020.
    O. Bryniarski et al. "Evading adversarial example detection defenses with
    orthogonal projected gradient descent", ICLR 2022.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from skadv.attacks import AutoAttack
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
    ...                             torch.nn.Linear(8, 3))
    >>> X = np.random.RandomState(0).rand(20, 16).astype(np.float32)
    >>> attack = AutoAttack(model, eps=0.1, max_iter=10, square_max_iter=50, input_shape=(1, 4, 4),
    ...                     random_state=0)
    >>> result = attack.run(X)
    >>> list(result.members)
    ['apgd-ce', 'apgd-dlr', 'square']
    >>> bool(np.abs(result.X_adv - X).max() <= 0.1 + 1e-6)
    True
    """

    _parameter_constraints: dict = {
        **BaseAttack._parameter_constraints,
        "eps": [Interval(Real, 0, None, closed="left")],
        "norm": NORM_CONSTRAINT,
        "attacks": [tuple, list, None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "n_restarts": [Interval(Integral, 1, None, closed="left")],
        "square_max_iter": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    _accepts_x_init = True

    def __init__(
        self,
        target,
        *,
        eps=0.3,
        norm=np.inf,
        attacks=None,
        max_iter=100,
        n_restarts=1,
        square_max_iter=1000,
        random_state=None,
        targeted=False,
        adaptive=True,
        clip_values=(0.0, 1.0),
        input_shape=None,
        batch_size=256,
        device=None,
        eot_samples=8,
        trace=False,
        verbose=0,
    ):
        super().__init__(
            target,
            targeted=targeted,
            adaptive=adaptive,
            clip_values=clip_values,
            input_shape=input_shape,
            batch_size=batch_size,
            device=device,
            eot_samples=eot_samples,
            trace=trace,
            verbose=verbose,
        )
        self.eps = eps
        self.norm = norm
        self.attacks = attacks
        self.max_iter = max_iter
        self.n_restarts = n_restarts
        self.square_max_iter = square_max_iter
        self.random_state = random_state

    def _check_attack_params(self):
        if self.trace:
            raise ValueError("AutoAttack records no trace; trace its members instead (trace=False).")
        for member in self.attacks or ():
            if not (isinstance(member, BaseAttack) or member in _MEMBERS):
                raise ValueError(
                    f"Unknown AutoAttack member {member!r}; use attack instances or names from {_MEMBERS}."
                )

    def _common(self, seed):
        return dict(eps=self.eps, norm=self.norm, random_state=seed, **_shared_params(self))

    def _members(self, target, X, y_idx):
        """``[(name, runner)]``; a runner maps ``(X, y, x_init)`` to a member's ``run`` result."""
        has_detector = target.reject_index is not None
        n_out = target.n_classes + has_detector
        names = self.attacks
        if names is None:
            names = _DEFAULT_ADAPTIVE if has_detector else _DEFAULT_PLAIN
        seeds = check_random_state(self.random_state).randint(np.iinfo(np.int32).max, size=len(names))
        image = _is_image(target, X)
        members = []
        for name, seed in zip(names, seeds):
            common = self._common(int(seed))
            if isinstance(name, BaseAttack):
                label = type(name).__name__
                taken = {taken_name for taken_name, _ in members}
                suffix = 2
                while label in taken:  # two instances of one class: "APGD", "APGD-2"
                    label = f"{type(name).__name__}-{suffix}"
                    suffix += 1
                members.append((label, name.run))
                continue
            if name in ("orthogonal", "selective") and not has_detector:
                continue
            if name in ("two-phase", "guided") and not has_detector:
                continue
            if name == "escape" and (not has_detector or target.escape is None):
                continue
            if name == "square" and not image:
                continue
            if name == "apgd-dlr" and n_out < (4 if self.targeted else 3):
                name = "apgd-margin"
            apgd = dict(max_iter=self.max_iter, n_restarts=self.n_restarts, **common)
            if name.startswith("apgd-"):
                runner = APGD(self.target, loss=name[5:], **apgd).run
            elif name == "two-phase":
                runner = _TwoPhase(
                    APGD(self.target, loss="ce", **{**apgd, "adaptive": False}),
                    APGD(self.target, loss="margin", **apgd),
                ).run
            elif name == "escape":
                runner = APGD(self.target, loss="escape", **{**apgd, "random_start": False}).run
            elif name == "guided":
                runner = _Guided(APGD(self.target, loss="margin", **apgd), *self._guides(target, X, y_idx)).run
            elif name in ("orthogonal", "selective"):
                step = self.eps / 10 if self.eps > 0 else 0.01
                runner = OrthogonalPGD(self.target, mode=name, step_size=step, max_iter=self.max_iter, **common).run
            else:
                runner = Square(self.target, max_iter=self.square_max_iter, **common).run
            members.append((name, runner))
        return members

    def _guides(self, target, X, y_idx):
        """Inputs accepted and classified as their label (the guides' pool), and that label."""
        pred = self.mean_scores(target, X).argmax(axis=1)
        good = pred == y_idx
        return X[good], target.indices_to_labels(y_idx[good])

    def run(self, X, y=None, *, x_init=None):
        """Run the members in order on the inputs not yet broken.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Clean inputs.
        y : array-like of shape (n_samples,), default=None
            True labels (target labels when ``targeted``); None uses the
            model's predictions.
        x_init : array-like of the shape of X, default=None
            Starting points (e.g. a non-adaptive attack's output), judged
            first and used as start by the members that accept one.

        Returns
        -------
        result : :class:`~sklearn.utils.Bunch`
            - ``X_adv``, ``success``, ``n_iter`` as :meth:`BaseAttack.run`
              (``success`` on the deployed decision);
            - ``broken_by``: object array ``(n_samples,)``, the name of the
              member (or ``"x_init"``) whose example is kept, None where none
              succeeded;
            - ``members``: dict name -> Bunch(``n_attacked``, ``n_broken``,
              ``n_iter``) in the order run;
            - ``checks``: dict check name -> Bunch(``fired``, ``value``,
              ``message``) for the per-call failure checks ``"stalled"`` and
              ``"black_box"``.
        """
        X, x_init, target, y_idx = self._prepare(X, y, x_init)
        out_dtype = X.dtype if np.issubdtype(X.dtype, np.floating) else np.float32
        labels = target.indices_to_labels(y_idx)
        X_adv = X.astype(out_dtype, copy=True)
        success = np.zeros(len(X), dtype=bool)
        broken_by = np.full(len(X), None, dtype=object)
        first_output = np.zeros(len(X), dtype=bool)
        if x_init is not None:
            x_init = self._project(target, X, x_init)
            ok = self.success(target, x_init, y_idx)
            X_adv[ok] = x_init[ok]
            success |= ok
            broken_by[ok] = "x_init"
        report, white_box_stalled, n_iter = {}, None, 0
        members = self._members(target, X, y_idx)
        desc = self._progress_desc(len(X))
        with progress_bar(verbose=self.verbose, desc=desc, unit="member", total=len(members)) as bar:
            for name, runner in members:
                rows = np.flatnonzero(~success)
                if rows.size == 0:
                    break
                bar.set_description_str(f"AutoAttack: {self._progress_desc(rows.size, name)}")
                start = None if x_init is None else x_init[rows]
                began = time.perf_counter()
                try:
                    result = runner(X[rows], labels[rows], x_init=start)
                except ValueError as exc:
                    if start is None or "x_init" not in str(exc):
                        raise
                    result = runner(X[rows], labels[rows])
                ok = self.success(target, result.X_adv, y_idx[rows])
                if not first_output[rows].any():
                    X_adv[rows] = result.X_adv.reshape(X_adv[rows].shape)
                    first_output[rows] = True
                X_adv[rows[ok]] = result.X_adv.reshape(X_adv[rows].shape)[ok]
                success[rows[ok]] = True
                broken_by[rows[ok]] = name
                n_iter += result.n_iter
                report[name] = Bunch(n_attacked=int(rows.size), n_broken=int(ok.sum()), n_iter=int(result.n_iter))
                if name != "square":
                    stalled = np.zeros(len(X), bool)
                    stalled[rows] = _stalled_rows(result.loss_range, ok)
                    white_box_stalled = stalled if white_box_stalled is None else white_box_stalled & stalled
                if self.verbose:
                    bar.write(
                        f"AutoAttack {name}: broke {int(ok.sum())} of {rows.size} ({int(success.sum())}/{len(X)} "
                        f"total) in {time.perf_counter() - began:.1f} s",
                        file=sys.stderr,
                    )
                bar.update(1)
        checks = self._checks(report, white_box_stalled, success, len(X))
        return Bunch(
            X_adv=X_adv,
            success=success,
            n_iter=int(n_iter),
            broken_by=broken_by,
            members=report,
            checks=checks,
            loss_range=None,
            trace=None,
        )

    def _project(self, target, X, x_init):
        lo, hi = self._clip_tensors(target)
        x0 = target.to_tensor(X)
        run = Run(target, torch.zeros(len(X), dtype=torch.int64), None, lo, hi)
        with torch.no_grad():
            projected = run.clip_and_project(target.to_tensor(x_init), x0, self.eps, normalize_norm(self.norm))
        return projected.cpu().numpy().reshape(X.shape).astype(X.dtype if X.dtype.kind == "f" else np.float32)

    @staticmethod
    def _checks(report, white_box_stalled, success, n):
        checks = {}
        if white_box_stalled is not None:
            n_left = int((~success).sum())
            n_stalled = int((white_box_stalled & ~success).sum())
            share = n_stalled / n_left if n_left else 0.0
            checks["stalled"] = Bunch(
                fired=share > _STALLED_TOL,
                value=share,
                message=_warn_message("stalled", f"the loss never moved on {n_stalled} of the {n_left} unbroken rows"),
            )
        if "square" in report and len(report) > 1:
            share = report["square"].n_broken / n
            checks["black_box"] = Bunch(
                fired=share > _BLACK_BOX_TOL,
                value=share,
                message=_warn_message(
                    "black_box",
                    f"the black-box Square attack broke {report['square'].n_broken} rows that every "
                    "white-box member missed",
                ),
            )
        for check in checks.values():
            if check.fired:
                warn_failure(check.message)
        return checks


class _Guided:
    """An attack started from the nearest pool input (L2) with another label."""

    def __init__(self, attack, pool, pool_labels):
        self.attack, self.pool, self.pool_labels = attack, pool, pool_labels

    def run(self, X, y, x_init=None):
        if len(self.pool) == 0:
            return self.attack.run(X, y)
        pool = torch.as_tensor(self.pool.reshape(len(self.pool), -1), dtype=torch.float32)
        nearest = []
        for start in range(0, len(X), self.attack.batch_size):
            rows = slice(start, start + self.attack.batch_size)
            dist = torch.cdist(torch.as_tensor(X[rows].reshape(len(X[rows]), -1), dtype=torch.float32), pool)
            same = torch.as_tensor(np.asarray(y[rows])[:, None] == self.pool_labels[None, :])
            nearest.append(dist.masked_fill(same, float("inf")).argmin(dim=1).numpy())
        return self.attack.run(X, y, x_init=self.pool[np.concatenate(nearest)].reshape(X.shape))


class _TwoPhase:
    """Non-adaptive attack, then an adaptive one started from its output."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def run(self, X, y, x_init=None):
        phase1 = self.first.run(X, y, x_init=x_init)
        phase2 = self.second.run(X, y, x_init=phase1.X_adv)
        return Bunch(
            X_adv=phase2.X_adv,
            success=phase2.success,
            n_iter=phase1.n_iter + phase2.n_iter,
            loss_range=phase2.loss_range,
        )
