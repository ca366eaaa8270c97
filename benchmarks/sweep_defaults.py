"""Sweep: how each seed detector's default settings were chosen, against the max-softmax baseline.

A detector's defaults are worth shipping only if, on the workload it was designed for
(its *home* workload), they beat the protected classifier's own max-softmax
probability (MSP, :class:`skadv.ConfidenceDetector`'s default). This script fits small
grids over the parameters that plausibly matter, on the home workloads of
``python -m skadv benchmark`` (the same data, classifiers, attacks and corruptions, from
:func:`skadv.evaluation.evaluate` through the benchmark's ``home_rows``):

* AdversarialAE, VAE, DNR: non-adaptive PGD (L-inf, eps 0.2, 40 steps of 0.01, random
  start) against the classifier alone; AUROC of the successful adversarial rows (the
  positives) against the clean test rows.
* ModelDistillation: harmful against harmless corrupted rows (gaussian noise, blur,
  brightness, pixelate at severities 1-5; harmful = right when clean, wrong when
  corrupted); AUROC of the harmful rows (positives) against the harmless ones.

Workloads ``digits-mlp`` (64-128-10 MLP) and ``digits-cnn`` (the demo's CNN) on
:func:`skadv.datasets.load_digits8`. Each seed draws a new split, classifier, attack
and corruption noise and seeds every detector. The first entry of each grid is the
class's defaults (``input_shape`` and ``random_state`` aside; DNR's required ``layers``
are the benchmark's). A setting counts as a clear win over the default when it beats
the default on every seed of both workloads and by at least 0.01 AUROC on average.

Prints progress on stderr, then one JSON object (every measurement, and a summary per
workload, detector and setting: mean/min AUROC over seeds, MSP's mean, how many seeds it
beats MSP and the default on) and a short table on stdout.

    OMP_NUM_THREADS=1 python benchmarks/sweep_defaults.py [--quick] [--seeds 0 1 2]
        [--workloads digits-mlp digits-cnn] [--detectors ModelDistillation ...] [--out FILE]

Measured on a shared 2-core machine under load, in two processes (``--detectors
ModelDistillation DNR`` and ``--detectors AdversarialAE VAE``): 21 and 30 min wall; from
the CPU time taken under that load, about 15 min in one process on an idle machine (the
AdversarialAE fits on the CNN cost most). ``--quick`` (seed 0, digits-mlp, a few settings
per detector): 58 s under load, a smoke test of the script, not a sweep.
"""

import argparse
import json
import sys
import time
from itertools import product

import numpy as np
import torch
from torch import nn

from skadv import (
    AdversarialAEDetector,
    ConfidenceDetector,
    DeepNeuralRejection,
    ModelDistillationDetector,
    OneVsAllSVC,
    VAEDetector,
)
from skadv._cli._benchmark import home_rows
from skadv.metrics import adversarial_scores, deployed_predictions, detection_auroc

HOME = {"AdversarialAE": "pgd", "VAE": "pgd", "DNR": "pgd", "ModelDistillation": "harmful"}
WORKLOADS = ("digits-mlp", "digits-cnn")
# Every score of one fitted VAE, each with both keys set (set_params keeps earlier values).
VAE_SCORES = tuple(
    {"score_type": score_type, "consistency": consistency}
    for score_type, consistency in (("consistency", "kl"), ("consistency", "disagreement"),
                                    ("reconstruction", "kl"), ("combined", "kl"))
)


def grids(quick):
    """Per detector: (fit settings, score settings) pairs; the first is the class's defaults.

    Settings are explicit, so that the grid does not move when a default does; the
    labels name only what differs from the current defaults (:func:`label`). Score
    settings are applied with ``set_params`` after one fit (the VAE's scores share its
    training). Special fit keys: ``student_hidden`` (ModelDistillation's student
    ``Flatten → Linear(h) → ReLU → Linear``; None: the default student), ``layer_C`` and
    ``combiner_C`` (DNR's ``OneVsAllSVC`` C of the layers, gamma 'scale', and of the
    combiner, gamma 1).
    """
    if quick:
        return {
            "ModelDistillation": [({}, [{}]), ({"loss_type": "kld"}, [{}]), ({"temperature": 2.0}, [{}])],
            "AdversarialAE": [({}, [{}]), ({"temperature": 2.0}, [{}])],
            "VAE": [({}, list(VAE_SCORES))],
            "DNR": [({}, [{}]), ({"layer_C": 10.0}, [{}])],
        }
    distillation = [
        dict(zip(("loss_type", "temperature", "student_hidden", "epochs"), values))
        for values in product(("kld", "xent"), (1.0, 0.5, 2.0), (None, 16), (20, 60))
    ]
    return {
        "ModelDistillation": [({}, [{}])] + [(params, [{}]) for params in distillation],
        "AdversarialAE": [({}, [{}])] + [
            ({"temperature": temperature, "epochs": epochs}, [{}])
            for epochs, temperature in product((20, 50), (1.0, 0.5, 2.0))
        ],
        "VAE": [
            (params, list(VAE_SCORES))
            for params in ({}, {"latent_dim": 4}, {"latent_dim": 16}, {"epochs": 100})
        ],
        "DNR": [
            (params, [{}])
            for params in ({}, {"layer_C": 0.1}, {"layer_C": 10.0}, {"combiner_C": 1.0})
        ],
    }


def make_detector(name, params, data, seed):
    """The detector ``name`` with its defaults overridden by ``params``."""
    params = dict(params)
    common = {"input_shape": data.input_shape, "random_state": seed}
    if name == "ModelDistillation":
        hidden = params.pop("student_hidden", None)
        if hidden is not None:
            n_inputs = int(np.prod(data.input_shape))
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                params["distilled_model"] = nn.Sequential(
                    nn.Flatten(), nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, 10)
                )
        return ModelDistillationDetector(data.model, **params, **common)
    if name == "AdversarialAE":
        return AdversarialAEDetector(data.model, **params, **common)
    if name == "VAE":
        return VAEDetector(data.model, **params, **common)
    if "layer_C" in params:
        params["layer_clf"] = OneVsAllSVC(C=params.pop("layer_C"))
    if "combiner_C" in params:
        params["combiner"] = OneVsAllSVC(C=params.pop("combiner_C"), gamma=1.0)
    return DeepNeuralRejection(data.model, layers=data.dnr_layers, n_jobs=1, **params, **common)


# The defaults behind the sweep's own keys (see grids).
_SPECIAL_DEFAULTS = {"student_hidden": None, "layer_C": 1.0, "combiner_C": 0.1}
_CLASSES = {"ModelDistillation": ModelDistillationDetector, "AdversarialAE": AdversarialAEDetector,
            "VAE": VAEDetector, "DNR": DeepNeuralRejection}


def label(name, params):
    """The settings in ``params`` that differ from the current defaults of detector ``name``; "default" if none."""
    defaults = {**_CLASSES[name]().get_params(), **_SPECIAL_DEFAULTS}
    return ",".join(f"{k}={v}" for k, v in params.items() if v != defaults[k]) or "default"


def auroc(det, rows, metric):
    """``det``'s AUROC: successful PGD rows vs clean test rows (``metric='pgd'``) or harmful vs harmless."""
    if metric == "pgd":
        successful = deployed_predictions(det, rows["X_pgd"]).labels != rows["y_eval"]
        return detection_auroc(adversarial_scores(det, rows["X_test"]),
                               adversarial_scores(det, rows["X_pgd"][successful]))
    corrupted = rows["corrupted"]
    scores = adversarial_scores(det, corrupted.X)
    return detection_auroc(scores[corrupted.harmless], scores[corrupted.harmful])


def prepare(workload, seed):
    data = home_rows(workload, seed)
    rows = {"X_test": data.X_test, "X_pgd": data.X_pgd, "y_eval": data.y_eval, "corrupted": data.corrupted}
    return data, rows


def log(message):
    print(message, file=sys.stderr, flush=True)


def run(workloads, seeds, detectors, quick, out=None):
    records = []
    start = time.perf_counter()
    for workload, seed in product(workloads, seeds):
        data, rows = prepare(workload, seed)
        msp = ConfidenceDetector(data.model, input_shape=data.input_shape, random_state=seed).fit(data.X_fit)
        msp_auroc = {metric: auroc(msp, rows, metric) for metric in ("pgd", "harmful")}
        log(f"{workload} seed {seed}: MSP pgd {msp_auroc['pgd']:.3f} harmful {msp_auroc['harmful']:.3f} "
            f"({time.perf_counter() - start:.0f} s)")
        for name in detectors:
            metric = HOME[name]
            seen = set()
            for fit_params, score_variants in grids(quick)[name]:
                # The defaults come first and again inside the grid: each setting is measured once.
                settings = {label(name, {**fit_params, **score}): score for score in score_variants}
                settings = {setting: score for setting, score in settings.items() if setting not in seen}
                if not settings:
                    continue
                seen.update(settings)
                det = make_detector(name, fit_params, data, seed)
                fitting = time.perf_counter()
                det.fit(data.X_fit, data.y_fit)  # detectors ignore y; DNR trains its SVMs on it
                fit_s = time.perf_counter() - fitting
                for setting, score_params in settings.items():
                    det.set_params(**score_params)
                    value = auroc(det, rows, metric)
                    record = {"workload": workload, "seed": seed, "detector": name, "metric": metric,
                              "setting": setting, "auroc": float(value),
                              "msp_auroc": float(msp_auroc[metric]), "fit_s": round(fit_s, 2)}
                    records.append(record)
                    log(f"  {name:17s} {record['setting']:48s} {metric:7s} {value:.3f} "
                        f"(MSP {msp_auroc[metric]:.3f}; fit {fit_s:.1f} s)")
                if out:
                    with open(out, "w") as f:
                        json.dump({"records": records}, f)
    return records


def summarize(records):
    """Per workload, detector and setting: AUROC over seeds, wins over MSP and over the default."""
    by_key = {}
    for r in records:
        by_key.setdefault((r["workload"], r["detector"], r["setting"]), []).append(r)
    summary = []
    for (workload, detector, setting), rs in by_key.items():
        default = {r["seed"]: r["auroc"] for r in by_key[(workload, detector, "default")]}
        auroc = np.array([r["auroc"] for r in rs])
        msp = np.array([r["msp_auroc"] for r in rs])
        vs_default = np.array([r["auroc"] - default[r["seed"]] for r in rs])
        summary.append({
            "workload": workload, "detector": detector, "setting": setting, "metric": rs[0]["metric"],
            "n_seeds": len(rs), "auroc_mean": round(float(auroc.mean()), 4), "auroc_min": round(float(auroc.min()), 4),
            "msp_mean": round(float(msp.mean()), 4), "beats_msp": int((auroc > msp).sum()),
            "vs_default_mean": round(float(vs_default.mean()), 4), "beats_default": int((vs_default > 0).sum()),
        })
    return summary


def table(summary, top=6):
    """The default and the best ``top`` settings per workload and detector, by mean AUROC."""
    lines = [f"{'workload':11s} {'detector':17s} {'setting':48s} {'metric':7s} {'AUROC':>6s} {'min':>6s} "
             f"{'MSP':>6s} {'>MSP':>5s} {'-dflt':>6s} {'>dflt':>5s}"]
    groups = {}
    for s in summary:
        groups.setdefault((s["workload"], s["detector"]), []).append(s)
    for rows in groups.values():
        best = sorted(rows, key=lambda s: -s["auroc_mean"])
        shown = [s for s in rows if s["setting"] == "default"] + [s for s in best if s["setting"] != "default"][:top]
        for s in shown:
            n = s["n_seeds"]
            lines.append(f"{s['workload']:11s} {s['detector']:17s} {s['setting']:48s} {s['metric']:7s} "
                         f"{s['auroc_mean']:6.3f} {s['auroc_min']:6.3f} {s['msp_mean']:6.3f} "
                         f"{s['beats_msp']:>3d}/{n} {s['vs_default_mean']:+6.3f} {s['beats_default']:>3d}/{n}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seed 0, digits-mlp, a few settings: a smoke test")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=None)
    parser.add_argument("--detectors", nargs="+", choices=tuple(HOME), default=tuple(HOME))
    parser.add_argument("--out", default=None, help="also write the JSON here (rewritten after every fit)")
    args = parser.parse_args()
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    workloads = args.workloads or (["digits-mlp"] if args.quick else list(WORKLOADS))
    start = time.perf_counter()
    records = run(workloads, seeds, args.detectors, args.quick, args.out)
    summary = summarize(records)
    result = {
        "command": " ".join(["python", "benchmarks/sweep_defaults.py", *sys.argv[1:]]),
        "torch_threads": torch.get_num_threads(), "seconds": round(time.perf_counter() - start, 1),
        "summary": summary, "records": records,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
    print(table(summary))


if __name__ == "__main__":
    main()
