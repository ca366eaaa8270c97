"""Peak memory of scoring 1,000,000 digit rows, beyond the input array itself.

Each detector is fitted on load_digits and then scores 1e6 rows (float32, 256 MB) in a fresh
subprocess; the figure is the growth of the process's peak resident memory during scoring.
skadv's promise: inference batches hold at most ``inference_batch_size`` rows and at most
what fits a fixed memory budget, so the growth stays far below the input's size whatever
``inference_batch_size`` is (the 8 MB of float64 scores are included). ``--inference-batch-size``
is set after fitting; without it the estimators' default (None: as many rows as the budget allows).

    python benchmarks/memory.py [--rows 1000000] [--inference-batch-size N]
"""

import argparse
import json
import resource
import subprocess
import sys

import numpy as np


def _digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


def _classifier():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).eval()


def _fitted(name):
    import skadv

    X, y = _digits()
    common = {"random_state": 0, "batch_size": 1024}
    if name == "ModelDistillationDetector":
        return skadv.ModelDistillationDetector(_classifier(), epochs=2, **common).fit(X)
    if name == "AdversarialAEDetector":
        return skadv.AdversarialAEDetector(_classifier(), epochs=2, **common).fit(X)
    if name == "VAEDetector":
        return skadv.VAEDetector(_classifier(), epochs=2, **common).fit(X)
    if name == "DeepNeuralRejection":
        layers = ["0", "2"]
        return skadv.DeepNeuralRejection(_classifier(), layers=layers, **common).fit(X[:400], y[:400])
    raise ValueError(name)


METHODS = {"DeepNeuralRejection": "decision_function"}
DETECTORS = ("ModelDistillationDetector", "AdversarialAEDetector", "VAEDetector", "DeepNeuralRejection")


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(name, rows, inference_batch_size):
    est = _fitted(name).set_params(inference_batch_size=inference_batch_size)
    X = np.resize(_digits()[0], (rows, 64))
    before = _peak_mb()
    getattr(est, METHODS.get(name, "score_samples"))(X)
    after = _peak_mb()
    return {"input_mb": round(X.nbytes / 2**20, 1), "peak_growth_mb": round(after - before, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--inference-batch-size", type=int, default=None)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.rows, args.inference_batch_size)))
        return
    import skadv

    results = {}
    for name in DETECTORS:
        if not hasattr(skadv, name):
            continue
        command = [sys.executable, __file__, "--one", name, "--rows", str(args.rows)]
        if args.inference_batch_size is not None:
            command += ["--inference-batch-size", str(args.inference_batch_size)]
        out = subprocess.run(command,
                             capture_output=True, text=True, check=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        json.dumps(
            {
                "benchmark": "scoring_memory",
                "rows": args.rows,
                "inference_batch_size": args.inference_batch_size,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
