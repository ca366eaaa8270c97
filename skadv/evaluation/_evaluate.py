"""``evaluate``: the detection evaluation of skadv's detectors (or the user's) on the user's model and data."""

import numbers
import time

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.utils import Bunch, check_random_state

from .._core import values_outside
from ..utils import hookable_layers, resolve_attack_surface
from ._bootstrap import bootstrap_counts, combine_seeds, interval
from ._measures import better_direction, detector_measures
from ._protocol import (
    Progress,
    adaptive_attack,
    corrupted_rows,
    fit_and_threshold,
    non_adaptive_attacks,
    observe,
    prepare,
    split_rows,
    verdict,
)
from ._report import EvaluationReport

__all__ = ["BUDGETS", "DEFAULT_DETECTORS", "evaluate"]

#: What each budget attacks and how hard. ``n_attack``: test rows attacked by the
#: non-adaptive attacks and corrupted (None: all test rows); ``n_adaptive``: test
#: rows attacked by AutoAttack per detector and ε (0: no adaptive attack, no headline); ``pgd_steps``; C&W-L2's
#: ``cw_iter`` iterations × ``cw_search`` binary-search steps from ``cw_const``
#: (``cw_iter=0`` skips C&W); AutoAttack's ``auto_iter`` iterations per white-box
#: member, ``auto_restarts`` APGD restarts, ``square_queries`` black-box queries
#: and ``eot`` samples per gradient of a randomized score; ``n_check``: rows of the
#: attack-failure checks; ``severities`` of the corruptions; ``epochs``: training
#: lengths of the default detectors (None: their own defaults); ``time``: wall time of
#: ``python -m skadv evaluate`` with the seven default detectors on the digits CNN and the
#: 1797 digits (540 test rows), on a shared two-core machine at load average 2.5-3.5 (a
#: machine oversubscribed by other processes can be ten times slower).
BUDGETS = {
    "quick": {
        "n_attack": 100, "n_adaptive": 20, "pgd_steps": 10, "cw_iter": 20, "cw_search": 2, "cw_const": 1.0,
        "auto_iter": 10, "auto_restarts": 1, "square_queries": 30, "eot": 1, "n_check": 6, "severities": (2, 4),
        "epochs": {"AdversarialAE": 5, "ModelDistillation": 8, "VAE": 15, "DNR_cv": 3},
        "time": "about 15 s (measured: 14 s)",
    },
    "standard": {
        "n_attack": 300, "n_adaptive": 100, "pgd_steps": 40, "cw_iter": 100, "cw_search": 5, "cw_const": 1e-2,
        "auto_iter": 50, "auto_restarts": 1, "square_queries": 300, "eot": 4, "n_check": 40,
        "severities": (1, 2, 3, 4, 5), "epochs": None,
        "time": "about 2 minutes (measured: 105 s)",
    },
    "thorough": {
        "n_attack": None, "n_adaptive": 300, "pgd_steps": 100, "cw_iter": 200, "cw_search": 9, "cw_const": 1e-2,
        "auto_iter": 100, "auto_restarts": 3, "square_queries": 1000, "eot": 8, "n_check": 100,
        "severities": (1, 2, 3, 4, 5), "epochs": None,
        "time": "about an hour (estimated)",
    },
}

#: The detectors ``evaluate`` fits when ``detectors`` is None (those that apply to the model), in table order:
#: the four seed detectors, then the baselines. MSP (the classifier's max-softmax probability) is always in.
DEFAULT_DETECTORS = ("AdversarialAE", "ModelDistillation", "VAE", "DNR", "MSP", "Mahalanobis", "FeatureSqueezing")
BASELINE = "MSP"
_BASELINES = ("MSP", "Mahalanobis", "FeatureSqueezing")


def describe_budget(name_or_budget):
    """One line saying what a budget costs (rows attacked, iterations, restarts) and roughly how long it takes."""
    b = resolve_budget(name_or_budget)
    n_attack = "all" if b["n_attack"] is None else b["n_attack"]
    return (
        f"{n_attack} test rows attacked non-adaptively (FGSM, PGD {b['pgd_steps']} steps at each eps, C&W-L2 "
        f"{b['cw_iter']} iterations x {b['cw_search']} searches) and corrupted (severities "
        f"{', '.join(map(str, b['severities']))}); AutoAttack on {b['n_adaptive']} rows per detector and eps "
        f"({b['auto_iter']} iterations, {b['auto_restarts']} restart(s), {b['square_queries']} Square queries, "
        f"{b['eot']} EOT sample(s)); failure checks on {b['n_check']} rows; {b['time']} on 2 CPU cores for the "
        "digits CNN with the default detectors"
    )


def resolve_budget(budget):
    if isinstance(budget, str):
        if budget not in BUDGETS:
            raise ValueError(f"Unknown budget {budget!r}; choose one of {', '.join(BUDGETS)} or pass a dict.")
        return dict(BUDGETS[budget])
    if isinstance(budget, dict):
        unknown = sorted(set(budget) - set(BUDGETS["standard"]))
        if unknown:
            raise ValueError(f"Unknown budget keys {unknown}; the keys are {sorted(BUDGETS['standard'])}.")
        return {**BUDGETS["standard"], "time": "custom budget: unknown", **budget}
    raise ValueError(f"budget must be one of {', '.join(BUDGETS)} or a dict of settings; got {budget!r}.")


def _torch_module(model):
    """The torch module inside a model skadv accepts (module, skorch net, FrozenEstimator of one), or None."""
    while isinstance(model, FrozenEstimator):
        model = model.estimator
    if isinstance(model, torch.nn.Module):
        return model
    module = getattr(model, "module_", None)
    return module if isinstance(module, torch.nn.Module) else None


def default_detectors(model, X, *, names=None, clip_values, input_shape, budget, random_state):
    """The skadv detectors that apply to ``model`` (all when it is a torch network), unfitted, by name.

    DNR reads its default layers (the last hidden layers :func:`skadv.utils.hookable_layers`
    finds on the first rows of ``X``); it applies when there is one.
    """
    from .. import (
        AdversarialAEDetector,
        ConfidenceDetector,
        DeepNeuralRejection,
        FeatureSqueezingDetector,
        MahalanobisDetector,
        ModelDistillationDetector,
        VAEDetector,
    )

    epochs = budget["epochs"] or {}
    common = {"input_shape": input_shape, "random_state": random_state}
    trained = {key: {"epochs": epochs[key]} if key in epochs else {}
               for key in ("AdversarialAE", "ModelDistillation", "VAE")}
    makers = {
        "AdversarialAE": lambda: AdversarialAEDetector(model, temperature=0.5, **trained["AdversarialAE"], **common),
        "ModelDistillation": lambda: ModelDistillationDetector(model, **trained["ModelDistillation"], **common),
        "VAE": lambda: VAEDetector(model, **trained["VAE"], **common),
        "MSP": lambda: ConfidenceDetector(model, **common),
        "Mahalanobis": lambda: MahalanobisDetector(model, **common),
    }
    if any(layer.dnr_default for layer in hookable_layers(model, X[:8], input_shape=input_shape)):
        makers["DNR"] = lambda: DeepNeuralRejection(model, cv=epochs.get("DNR_cv"), n_jobs=1, **common)
    if clip_values is not None:
        makers["FeatureSqueezing"] = lambda: FeatureSqueezingDetector(model, value_range=tuple(clip_values), **common)
    if names is None:
        names = [name for name in DEFAULT_DETECTORS if name in makers]
    unknown = [name for name in names if name not in DEFAULT_DETECTORS]
    if unknown:
        raise ValueError(f"Unknown detector names {unknown}; choose from {', '.join(DEFAULT_DETECTORS)}.")
    missing = [name for name in names if name not in makers]
    if missing:
        raise ValueError(
            f"{', '.join(missing)} do(es) not apply here: DNR needs hidden layers it can hook "
            "(skadv.utils.hookable_layers), "
            "FeatureSqueezing a clip_values range."
        )
    return {name: makers[name]() for name in names}


def _check_data(model, X, y, clip_values, input_shape):
    X = np.asarray(X)
    if X.ndim < 2 or X.shape[0] == 0 or not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"X must be a numeric array of shape (n_samples, ...) with rows; got shape {X.shape}.")
    if X.ndim > 2:
        if input_shape is not None and tuple(input_shape) != X.shape[1:]:
            raise ValueError(f"input_shape={tuple(input_shape)} differs from the shape of X's rows {X.shape[1:]}.")
        input_shape = X.shape[1:]
        X = X.reshape(X.shape[0], -1)
    X = X.astype(np.float32)
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values.")
    if input_shape is not None:
        input_shape = tuple(int(s) for s in input_shape)
        if int(np.prod(input_shape)) != X.shape[1]:
            raise ValueError(
                f"input_shape={input_shape} holds {int(np.prod(input_shape))} values, but X's rows have "
                f"{X.shape[1]}; pass the shape of one input as the model takes it, e.g. (1, 28, 28)."
            )
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must hold one label per row of X ({X.shape[0]}); got shape {y.shape}.")
    observed = (float(X.min()), float(X.max()))
    if clip_values is not None:
        lo, hi = (float(v) for v in clip_values)
        if not lo < hi:
            raise ValueError(f"clip_values must be (low, high) with low < high; got {tuple(clip_values)}.")
        if values_outside(X, lo, hi) is not None:  # the attacks' rule, checked before any fit
            raise ValueError(
                f"X spans [{observed[0]:g}, {observed[1]:g}], outside clip_values=({lo:g}, {hi:g}): attacks and "
                "corruptions clip to that box, so the budgets would mean nothing. Pass the range your model takes, "
                f"e.g. clip_values=({observed[0]:g}, {observed[1]:g}), rescale X, or clip_values=None for no box."
            )
        clip_values = (lo, hi)
    _, counts = np.unique(y, return_counts=True)
    if counts.min() < 4:
        raise ValueError(
            f"Each class needs at least 4 rows for the stratified fit / threshold / test split; the smallest has "
            f"{counts.min()}."
        )
    if _torch_module(model) is None:
        raise ValueError(
            "model must be a torch.nn.Module returning logits, a fitted skorch net or a FrozenEstimator of one: "
            f"the attacks need its gradients; got {type(model).__name__}."
        )
    try:
        surface = resolve_attack_surface(model, X[:8], input_shape=input_shape)
        surface.scores(X[:8])
    except Exception as exc:
        raise ValueError(
            f"The model fails on X's first rows reshaped to input_shape={input_shape}: {exc}. Check input_shape "
            "(the shape of one input as the model takes it) and that the model takes float32 rows."
        ) from exc
    classes = np.arange(surface.n_classes) if surface.classes is None else np.asarray(surface.classes)
    unknown = np.setdiff1d(np.unique(y), classes)
    if unknown.size:
        raise ValueError(
            f"y holds labels {unknown[:5].tolist()} the model does not output; its {surface.n_classes} outputs "
            f"are the classes {classes.tolist()[:10]}."
        )
    return X, y, clip_values, input_shape, observed


def _seeds(random_state, n_seeds):
    if isinstance(random_state, (list, tuple, np.ndarray)):
        seeds = [int(s) for s in random_state]
        if not seeds:
            raise ValueError("random_state: give at least one seed.")
        return seeds
    if not isinstance(n_seeds, numbers.Integral) or n_seeds < 1:
        raise ValueError(f"n_seeds must be a positive int; got {n_seeds!r}.")
    if random_state is None:
        return [int(s) for s in check_random_state(None).randint(np.iinfo(np.int32).max, size=n_seeds)]
    if not isinstance(random_state, numbers.Integral):
        raise ValueError(f"random_state must be an int, a list of ints or None; got {random_state!r}.")
    return [int(random_state) + i for i in range(n_seeds)]


def evaluate(
    model,
    X,
    y,
    *,
    detectors=None,
    clip_values=(0.0, 1.0),
    input_shape=None,
    eps=None,
    adaptive_eps=None,
    fpr=0.05,
    budget="standard",
    threshold_size=0.2,
    test_size=0.3,
    n_seeds=1,
    random_state=None,
    n_bootstrap=1000,
    confidence=0.95,
    return_rows=False,
    verbose=0,
):
    """Evaluate adversarial-example detectors next to a model, on the user's data, with confidence intervals.

    The protocol (one for the whole package: ``python -m skadv demo`` and
    ``benchmark`` run it too):

    1. Split ``X, y`` (stratified, seeded) into fit rows, threshold rows and
       test rows. ``X`` should hold rows the model was not trained on.
    2. Fit each detector on the fit rows (an unfitted one; a fitted one is
       used as is) and fix its threshold so that ``fpr`` of the held-out
       threshold rows are flagged (``infer_threshold``), before any attack.
    3. Measure on the test rows, at that threshold: the clean false-positive
       rate and the clean accuracy with rejection (the cost of deploying the
       detector); for non-adaptive FGSM and PGD (L∞, each ε of ``eps``) and
       C&W-L2 against the classifier alone, the evasion rate, the TPR (share
       of the successful adversarial rows flagged) and the AUROC of those
       rows against the clean ones; where rows are images (``input_shape``
       of 2 or 3 axes), the AUROC of harmful against harmless corruptions
       (:mod:`skadv.corruptions`, :func:`skadv.metrics.harmfulness`); under
       the adaptive :class:`~skadv.attacks.AutoAttack` (classifier and
       detector together) at each ε of ``adaptive_eps``, the evasion rate
       (the headline: misclassified and not flagged), TPR and AUROC, with the
       verdicts of the attack-failure checks
       (:func:`~skadv.attacks.check_attack_failure`: a fired check means the
       attack may be too weak, so the evasion is a lower bound); fit and
       scoring time.
    4. Put a bootstrap confidence interval (over test rows, and over seeds
       when there are several) beside every rate, and compare each detector
       with the max-softmax baseline (MSP) on the same resampled rows.

    Parameters
    ----------
    model : torch.nn.Module, fitted skorch net or FrozenEstimator of one
        The trained classifier to protect, returning logits (or
        probabilities). It is never modified.
    X : array-like of shape (n_samples, n_features) or (n_samples, *input_shape)
        Labelled rows the model was not trained on, in ``clip_values``.
    y : array-like of shape (n_samples,)
        Their true labels (the model's classes); at least 4 rows per class.
    detectors : dict of str to estimator, list of str or None, default=None
        Name → skadv detector or any estimator implementing
        ``attack_surface()``: an unfitted one is cloned and fitted on the fit
        rows (its ``random_state`` and ``input_shape`` set when None), a
        fitted one is copied and used as is; either gets its threshold from
        ``infer_threshold`` when it has one. A list picks names of
        :data:`DEFAULT_DETECTORS`. None: every skadv detector that applies to
        the model (DNR on its default layers; FeatureSqueezing when
        ``clip_values`` is given). The max-softmax baseline ``"MSP"``
        (:class:`~skadv.ConfidenceDetector`) is always added.
    clip_values : tuple of (float, float) or None, default=(0.0, 1.0)
        The range of valid inputs (the attacks' box). ``X`` must lie in it: a
        ValueError names the observed range otherwise. None: no box.
    input_shape : tuple of int, default=None
        Shape of one input as the model takes it, e.g. ``(1, 28, 28)``; rows
        of ``X`` are reshaped to it. Images (2 or 3 axes) are also corrupted.
        None: the shape of ``X``'s rows when ``X`` has more than 2 axes, else
        flat rows.
    eps : sequence of float, default=None
        L∞ budgets of the non-adaptive FGSM and PGD, in input units. None:
        0.1 and 0.2 of the width of ``clip_values`` (of X's range without it).
    adaptive_eps : sequence of float, default=None
        L∞ budgets of the adaptive AutoAttack (each costs one AutoAttack
        run per detector; several draw a security-evaluation curve,
        :meth:`EvaluationReport.plot_security`). None: the largest of ``eps``.
    fpr : float in (0, 0.5], default=0.05
        False-positive rate every threshold is fixed at, on the threshold rows.
    budget : {"quick", "standard", "thorough"} or dict, default="standard"
        How many rows are attacked and how hard (:data:`BUDGETS`); a dict
        overrides keys of ``"standard"``.
    threshold_size : float in (0, 1), default=0.2
        Share of the non-test rows that fix the thresholds (the others fit).
    test_size : float in (0, 1), default=0.3
        Share of all rows held out for the measurements.
    n_seeds : int, default=1
        Repeats with seeds ``random_state, random_state + 1, ...`` (new split,
        detector training and attacks each); the intervals then cover the
        variation between seeds too.
    random_state : int, list of int or None, default=None
        Seed of the split, training, attacks and bootstrap; a list gives the
        seeds of the repeats. The same seeds give the same report.
    n_bootstrap : int, default=1000
        Bootstrap resamples of the test rows.
    confidence : float in (0, 1), default=0.95
        Level of the percentile intervals.
    return_rows : bool, default=False
        Keep the last seed's test rows and attacked rows in the report
        (``rows``), e.g. to draw more figures from them.
    verbose : int, default=0
        1: a line per stage and tqdm progress bars (on stderr); 2: also each
        attack's own progress.

    Returns
    -------
    report : EvaluationReport
        ``table`` (one row per detector), ``checks``, ``settings``,
        ``splits``, the fitted ``detectors`` and their per-row
        ``observations`` (of the last seed); ``to_markdown()``, ``plot()``,
        ``plot_security()``, ``save(dir)``.

    See Also
    --------
    EvaluationReport : What the report holds and writes.
    skadv.metrics.security_evaluation : Evasion of one detector along a range of budgets.

    Examples
    --------
    >>> import torch
    >>> from skadv.datasets import load_digits8
    >>> from skadv.evaluation import evaluate
    >>> X, y = load_digits8()
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))  # stands in for a trained net
    >>> report = evaluate(model, X[:300], y[:300], detectors=[], eps=[0.1], random_state=0,
    ...                   budget={"n_attack": 30, "n_adaptive": 5, "pgd_steps": 5, "cw_iter": 0,
    ...                           "auto_iter": 5, "square_queries": 10, "eot": 1, "n_check": 0})
    >>> [row["detector"] for row in report.records]
    ['MSP']
    >>> row = report.records[0]
    >>> bool(row["clean_fpr_lo"] <= row["clean_fpr"] <= row["clean_fpr_hi"])
    True
    """
    start = time.perf_counter()
    progress = Progress(verbose)
    budget = resolve_budget(budget)
    X, y, clip_values, input_shape, observed = _check_data(model, X, y, clip_values, input_shape)
    for name, value in (("fpr", fpr), ("confidence", confidence)):
        if not 0 < value < 1 or (name == "fpr" and value > 0.5):
            raise ValueError(f"{name} must be in (0, {0.5 if name == 'fpr' else 1}); got {value!r}.")
    if not isinstance(n_bootstrap, numbers.Integral) or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be a positive int (e.g. 1000); got {n_bootstrap!r}.")
    for name, value in (("threshold_size", threshold_size), ("test_size", test_size)):
        if not 0 < value < 1:
            raise ValueError(f"{name} must be a share in (0, 1); got {value!r}.")
    width = (clip_values[1] - clip_values[0]) if clip_values is not None else (observed[1] - observed[0])
    eps = [0.1 * width, 0.2 * width] if eps is None else [float(e) for e in np.atleast_1d(eps)]
    adaptive_eps = [max(eps)] if adaptive_eps is None else [float(e) for e in np.atleast_1d(adaptive_eps)]
    if not eps or min(eps) <= 0 or not adaptive_eps or min(adaptive_eps) <= 0:
        raise ValueError(f"eps and adaptive_eps must be positive budgets; got {eps} and {adaptive_eps}.")
    seeds = _seeds(random_state, n_seeds)
    image = input_shape is not None and len(input_shape) in (2, 3)
    progress.stage(f"budget: {describe_budget(budget)}")

    per_seed, checks, splits, seconds = [], {}, [], {}
    for seed in seeds:
        templates = _templates(model, X, detectors, clip_values, input_shape, budget, seed)
        split = split_rows(y, threshold_size=threshold_size, test_size=test_size, random_state=seed)
        splits.append(split)
        X_test, y_test = X[split.test], y[split.test]
        progress.stage(
            f"seed {seed}: fitting {len(templates)} detectors on {len(split.fit)} rows, thresholds at "
            f"{fpr:g} FPR on {len(split.threshold)} held-out rows"
        )
        fitted, info = {}, {}
        for name, template in progress.bar(templates.items(), "fit + threshold", total=len(templates)):
            det, given = prepare(template, seed=seed, input_shape=input_shape)
            fit_s, thresholded = fit_and_threshold(det, given, X[split.fit], y[split.fit], X[split.threshold], fpr)
            fitted[name] = det
            info[name] = {"given": given, "thresholded": thresholded, "fit_s": fit_s}

        n_attack = len(X_test) if budget["n_attack"] is None else min(budget["n_attack"], len(X_test))
        X_att, y_att = X_test[:n_attack], y_test[:n_attack]
        corrupting = image and bool(budget["severities"])
        progress.stage(f"seed {seed}: non-adaptive attacks{' and corruptions' if corrupting else ''} on "
                       f"{n_attack} test rows")
        attacks = non_adaptive_attacks(model, X_att, y_att, eps_values=eps, budget=budget, clip_values=clip_values,
                                       input_shape=input_shape, random_state=seed, progress=progress)
        corrupted = None
        if corrupting:
            corrupted = corrupted_rows(model, X_att, y_att, severities=budget["severities"],
                                       clip_values=clip_values, input_shape=input_shape, random_state=seed,
                                       progress=progress)

        n_adaptive = min(budget["n_adaptive"], len(X_test))
        run_eps = adaptive_eps if n_adaptive else []
        progress.stage(f"seed {seed}: scoring" + (f", and AutoAttack at eps {', '.join(f'{e:g}' for e in run_eps)} "
                                                  f"on {n_adaptive} test rows per detector" if run_eps else ""))
        counts = bootstrap_counts(len(X_test), n_bootstrap, seed)
        measures = {}
        jobs = [(name, eps_i) for name in fitted for eps_i in [None, *run_eps]]
        obs, adaptive_rows = {}, {}
        for name, eps_i in progress.bar(jobs, "scoring and AutoAttack"):
            det = fitted[name]
            if eps_i is None:
                scoring = time.perf_counter()
                clean = observe(det, X_test, input_shape)
                info[name]["score_ms_per_1k"] = 1e6 * (time.perf_counter() - scoring) / len(X_test)
                obs[name] = Bunch(
                    clean=clean, adaptive={},
                    attacks={key: observe(det, X_adv, input_shape) for key, X_adv in attacks.items()},
                    corrupted=None if corrupted is None else observe(det, corrupted.X, input_shape),
                )
                continue
            X_adv, found = adaptive_attack(det, X_test[:n_adaptive], y_test[:n_adaptive], eps=eps_i, budget=budget,
                                           clip_values=clip_values, input_shape=input_shape, random_state=seed,
                                           verbose=progress.attack_verbose)
            obs[name].adaptive[f"adaptive@{eps_i:g}"] = observe(det, X_adv, input_shape)
            checks.setdefault(name, {}).setdefault(f"{eps_i:g}", {})[seed] = found
            adaptive_rows.setdefault(name, {})[f"adaptive@{eps_i:g}"] = X_adv
        for name in fitted:
            measures[name] = detector_measures(obs[name], y_test, y_test, corrupted, counts)
        per_seed.append(Bunch(seed=seed, measures=measures, info=info))
        for name, entry in info.items():
            seconds.setdefault(name, []).append(entry)

    report = _summarise(per_seed, seeds, seconds, checks, n_bootstrap, confidence)
    settings = {
        "seeds": seeds, "n_rows": len(X), "n_fit": len(splits[0].fit), "n_threshold": len(splits[0].threshold),
        "n_test": len(splits[0].test), "fpr": fpr, "eps": eps, "adaptive_eps": adaptive_eps,
        "clip_values": clip_values, "input_shape": input_shape, "observed_range": observed,
        "budget": {k: v for k, v in budget.items() if k != "time"}, "budget_text": describe_budget(budget),
        "n_bootstrap": n_bootstrap, "confidence": confidence, "model": type(model).__name__,
        "seconds": round(time.perf_counter() - start, 1),
    }
    rows = None
    if return_rows:
        rows = Bunch(X_test=X_test, y_test=y_test, attacks=attacks, adaptive=adaptive_rows,
                     corrupted=corrupted)
    return EvaluationReport(records=report.records, metrics=report.metrics, checks=checks, settings=settings,
                            splits=splits, per_seed=report.per_seed, detectors=fitted, observations=obs,
                            y_test=y_test, rows=rows)


def _templates(model, X, detectors, clip_values, input_shape, budget, seed):
    """Name → detector (unfitted or fitted) for one seed, MSP included."""
    if detectors is None or isinstance(detectors, (list, tuple)):
        names = None if detectors is None else list(dict.fromkeys([*detectors, BASELINE]))
        return default_detectors(model, X, names=names, clip_values=clip_values, input_shape=input_shape,
                                 budget=budget, random_state=seed)
    if not isinstance(detectors, dict):
        raise ValueError(f"detectors must be a dict of name -> estimator, a list of names or None; got {detectors!r}.")
    for name, det in detectors.items():
        if not hasattr(det, "attack_surface"):
            raise ValueError(
                f"detectors[{name!r}] ({type(det).__name__}) has no attack_surface(): the adaptive attack needs it. "
                "Every skadv detector has one; a third-party detector implements it (see skadv.utils.AttackSurface)."
            )
    templates = dict(detectors)
    if BASELINE not in templates:
        templates[BASELINE] = default_detectors(model, X, names=[BASELINE], clip_values=clip_values,
                                                input_shape=input_shape, budget=budget,
                                                random_state=seed)[BASELINE]
    return templates


def _summarise(per_seed, seeds, seconds, checks, n_bootstrap, confidence):
    """Records (one per detector) with value, interval and comparison with MSP for every metric."""
    names = list(per_seed[0].measures)
    metrics = list(dict.fromkeys(m for name in names for m in per_seed[0].measures[name]))
    combined = {}
    for name in names:
        for metric in metrics:
            values = [run.measures[name].get(metric, (np.nan, None))[0] for run in per_seed]
            reps = [run.measures[name][metric][1] if metric in run.measures[name] else np.full(n_bootstrap, np.nan)
                    for run in per_seed]
            # The same generator state for every (detector, metric): the seed draws pair up across detectors.
            combined[name, metric] = combine_seeds(values, np.stack(reps), n_bootstrap, seeds[0])
    records = []
    for name in names:
        entries = seconds[name]
        given = entries[0]["given"]
        record = {
            "detector": name,
            "kind": "baseline" if name in _BASELINES else "seed" if name in DEFAULT_DETECTORS else "user",
            "fitted_by": "user (used as is)" if given else "evaluate",
            "threshold": "held-out rows" if entries[0]["thresholded"] else "the detector's own",
        }
        for metric in metrics:
            value, reps = combined[name, metric]
            lo, hi = interval(value, reps, confidence)
            record[metric], record[f"{metric}_lo"], record[f"{metric}_hi"] = value, lo, hi
            record[f"{metric}_vs_msp"] = _compare(reps, combined[BASELINE, metric][1], metric, confidence) \
                if name != BASELINE and BASELINE in names else ""
        for eps_key, by_seed in checks.get(name, {}).items():
            record[f"adaptive@{eps_key}_checks"] = "; ".join(
                verdict(found) if len(by_seed) == 1 else f"seed {seed}: {verdict(found)}"
                for seed, found in by_seed.items())
        record["fit_s"] = float(np.mean([e["fit_s"] for e in entries]))
        record["score_ms_per_1k"] = float(np.mean([e["score_ms_per_1k"] for e in entries]))
        records.append(record)
    per_seed_records = [
        {"seed": run.seed, "detector": name, **{m: v[0] for m, v in run.measures[name].items()}}
        for run in per_seed for name in names
    ]
    return Bunch(records=records, metrics=metrics, per_seed=per_seed_records)


def _compare(replicates, baseline, metric, confidence):
    """"better" / "worse" than the baseline where the interval of the paired difference excludes 0, else "overlaps".

    The replicates of both come from the same resampled rows (and seeds), so
    their difference has its own percentile interval.
    """
    difference = replicates - baseline
    finite = difference[np.isfinite(difference)]
    if finite.size == 0:
        return ""
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    if lo <= 0 <= hi:
        return "overlaps"
    return "better" if (lo > 0) == better_direction(metric) else "worse"
