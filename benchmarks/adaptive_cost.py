"""Cost of the adaptive evaluation: AutoAttack rows/s against DNR and AdversarialAE on the digits CNN.

Builds the demo's digits CNN, DNR and AdversarialAE exactly as
``benchmarks/adaptive_evasion.py`` does (thresholds at 5 % false positives on held-out
clean rows), runs the default adaptive AutoAttack on the first ``--n`` test digits and
prints one JSON object per detector and eps: wall and CPU seconds, rows/s, the seconds,
rows attacked and rows broken of each member (read from the ensemble's verbose report),
the CPU seconds of each attack class, and the load average (the wall times of a shared
machine are indicative; the CPU times of ``--threads 1`` are steadier). ``--save`` writes
the per-row success and ``X_adv`` to an ``.npz`` file, so that two versions of the package
can be compared row by row (run this file with ``PYTHONPATH`` set to each checkout):

    python benchmarks/adaptive_cost.py [--n 300] [--eps 0.2] [--detectors DNR AdversarialAE]
        [--max-iter 100] [--square-max-iter 1000] [--threads 2] [--save out.npz]
"""

import argparse
import contextlib
import io
import json
import os
import re
import time
import warnings

import numpy as np
import torch
from sklearn.model_selection import train_test_split

import skadv
from skadv import AdversarialAEDetector, DeepNeuralRejection
from skadv.attacks import AttackFailureWarning, AutoAttack, BaseAttack
from skadv.datasets import load_digits8, make_digits_classifier

_MEMBER_LINE = re.compile(r"AutoAttack (\S+): broke (\d+) of (\d+) .* in ([\d.]+) s")


def _fit(name, cnn, X_fit, y_fit, X_val, seed):
    common = {"input_shape": (1, 8, 8), "random_state": seed}
    if name == "DNR":
        det = DeepNeuralRejection(cnn, layers=["features.1", "features.4", "classifier.2"], cv=5, n_jobs=1, **common)
        det.fit(X_fit, y_fit)
    else:
        det = AdversarialAEDetector(cnn, epochs=30, temperature=0.5, **common).fit(X_fit)
    det.infer_threshold(X_val, threshold_perc=95)
    return det


def _cpu_by_attack():
    """CPU seconds spent in each attack class's ``run`` (the members of the ensemble), by class and loss."""
    spent = {}
    original = BaseAttack.run

    def timed_run(self, *args, **kwargs):
        key = type(self).__name__ + (f"-{self.loss}" if hasattr(self, "loss") else "")
        key += "" if self.adaptive else "-non-adaptive"
        start = time.process_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent[key] = round(spent.get(key, 0.0) + time.process_time() - start, 2)

    BaseAttack.run = timed_run
    return spent


def _attack(det, X, y, eps, args):
    attack = AutoAttack(det, eps=eps, max_iter=args.max_iter, square_max_iter=args.square_max_iter,
                        random_state=args.random_state, eot_samples=4, verbose=1)
    log = io.StringIO()
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(), contextlib.redirect_stderr(log):
        warnings.simplefilter("ignore", AttackFailureWarning)
        result = attack.run(X, y)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    members = {
        m.group(1): {"attacked": int(m.group(3)), "broken": int(m.group(2)), "seconds": float(m.group(4))}
        for m in _MEMBER_LINE.finditer(log.getvalue())
    }
    return result, seconds, cpu, members


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.2])
    parser.add_argument("--detectors", nargs="+", default=["DNR", "AdversarialAE"])
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--square-max-iter", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--save", default=None, help="npz file for the per-row success and X_adv")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seed = args.random_state

    torch.manual_seed(seed)
    X_train, X_test, y_train, y_test = load_digits8(test_size=0.3, random_state=seed)
    X_fit, X_val, y_fit, _ = train_test_split(X_train, y_train, test_size=0.2, stratify=y_train, random_state=seed)
    cnn = make_digits_classifier(X_fit, y_fit, epochs=25, random_state=seed).module_.eval()
    X_eval, y_eval = X_test[: args.n], y_test[: args.n]

    saved, report = {}, {"skadv": skadv.__file__, "n_rows": len(X_eval), "threads": args.threads, "results": {}}
    report["load_average"] = [round(v, 2) for v in os.getloadavg()]
    spent = _cpu_by_attack()
    for name in args.detectors:
        det = _fit(name, cnn, X_fit, y_fit, X_val, seed)
        for eps in args.eps:
            spent.clear()
            result, seconds, cpu, members = _attack(det, X_eval, y_eval, eps, args)
            key = f"{name}@{eps}"
            report["results"][key] = {
                "seconds": round(seconds, 2),
                "rows_per_s": round(len(X_eval) / seconds, 2),
                "cpu_seconds": round(cpu, 2),
                "rows_per_cpu_s": round(len(X_eval) / cpu, 2),
                "cpu_seconds_by_attack": dict(spent),
                "n_broken": int(result.success.sum()),
                "members": members,
            }
            saved[f"{key}_success"] = result.success
            saved[f"{key}_X_adv"] = result.X_adv
            print(json.dumps({key: report["results"][key]}), flush=True)
    if args.save:
        np.savez_compressed(args.save, **saved)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
