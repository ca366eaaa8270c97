"""Benchmark DeepNeuralRejection against a plain scikit-learn DNR (secml's structure).

The reference path does what secml's CClassifierDNR does, with scikit-learn parts:
for every fold and every layer it recomputes the network's features with a forward
pass, fits ``OneVsRestClassifier(SVC(kernel="rbf"))`` and takes its
``decision_function``; the combiner is another one-vs-rest RBF SVC. Prediction
again runs the network once per layer and evaluates each binary SVC separately.
skadv caches the layer features from one forward pass, fits the one-vs-all SVMs on
shared precomputed kernels (joblib-parallel over layers x folds) and predicts with one
batched torch kernel per layer. Both paths use the same folds; the script checks that
their decisions agree and prints JSON.

Both paths run with torch's default thread count unless ``--threads`` pins it (libsvm,
behind the reference's SVCs, is single-threaded whatever the setting: skadv's batched
kernels can use the cores, which is part of the speed-up; ``--threads 1`` shows the rest).
Predict timings of the two paths are interleaved and the best of ``--repeats`` kept, so
that load on a shared machine hits both alike.

Usage: ``python benchmarks/dnr.py [--n-train 1200] [--n-test 597] [--n-jobs 2] [--threads N]``.
"""

import argparse
import json
import os
import platform
import time
from collections import OrderedDict

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import KFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import SVC
from torch import nn

import skadv
from skadv import DeepNeuralRejection, OneVsAllSVC

# secml's DNR tutorial settings (layers relu2/relu3/relu4 of its MNIST CNN).
LAYERS = OrderedDict(
    [("features.relu2", (10.0, 1e-3)), ("classifier.relu3", (10.0, 1e-2)), ("classifier.relu4", (1.0, 1e-2))]
)
COMBINER = (0.1, 1.0)


class CNN(nn.Module):
    """secml's MNIST CNN shrunk to 8x8 digits."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(1, 32, 3, padding=1),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(32, 64, 3, padding=1),
                relu2=nn.ReLU(),
                pool2=nn.MaxPool2d(2),
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                fc3=nn.Linear(64 * 4 * 4, 256),
                relu3=nn.ReLU(),
                fc4=nn.Linear(256, 128),
                relu4=nn.ReLU(),
                fc5=nn.Linear(128, 10),
            )
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def train_cnn(X, y, epochs=8, seed=0):
    torch.manual_seed(seed)
    net = CNN()
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    x, t = torch.as_tensor(X).reshape(-1, 1, 8, 8), torch.as_tensor(y)
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x[batch]), t[batch]).backward()
            optimizer.step()
    return net.eval()


# ----------------------------------------------------------------------------- plain sklearn path


def layer_output(net, name, X):
    """One forward pass for one layer's output (secml recomputes the network per layer)."""
    captured = {}
    handle = dict(net.named_modules())[name].register_forward_hook(
        lambda m, a, out: captured.__setitem__("out", out.reshape(len(out), -1))
    )
    with torch.no_grad():
        net(torch.as_tensor(X, dtype=torch.float32).reshape(-1, 1, 8, 8))
    handle.remove()
    return captured["out"].double().numpy()


def ovr_svc(C, gamma):
    return OneVsRestClassifier(SVC(kernel="rbf", C=C, gamma=gamma))


class ReferenceDNR:
    def __init__(self, net, folds):
        self.net, self.folds = net, folds

    def fit(self, X, y):
        out_of_fold = np.zeros((len(X), 10 * len(LAYERS)))
        for train, test in self.folds:
            for i, (name, (C, gamma)) in enumerate(LAYERS.items()):
                svm = ovr_svc(C, gamma).fit(layer_output(self.net, name, X[train]), y[train])
                out_of_fold[test, 10 * i : 10 * (i + 1)] = svm.decision_function(layer_output(self.net, name, X[test]))
        self.layers_ = [ovr_svc(C, g).fit(layer_output(self.net, name, X), y) for name, (C, g) in LAYERS.items()]
        self.combiner_ = ovr_svc(*COMBINER).fit(out_of_fold, y)
        return self

    def decision_function(self, X):
        scores = [svm.decision_function(layer_output(self.net, name, X)) for name, svm in zip(LAYERS, self.layers_)]
        return self.combiner_.decision_function(np.hstack(scores))


def timed(fn, repeat=1):
    best, result = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=1200)
    parser.add_argument("--n-test", type=int, default=597)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both paths (default: torch's)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved predict timings per path")
    parser.add_argument("--device", default="cpu", help="skadv's device ('cuda' times skadv on the GPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    order = np.random.RandomState(0).permutation(len(X))
    X, y = X[order], y[order]
    X_train, y_train = X[: args.n_train], y[: args.n_train]
    X_test = X[args.n_train : args.n_train + args.n_test]
    net = train_cnn(X_train, y_train)
    cv = KFold(5, shuffle=True, random_state=0)
    folds = list(cv.split(X_train))

    def skadv_dnr(n_jobs):
        layers = [(name, OneVsAllSVC(C=C, gamma=gamma)) for name, (C, gamma) in LAYERS.items()]
        return DeepNeuralRejection(
            net,
            layers=layers,
            combiner=OneVsAllSVC(C=COMBINER[0], gamma=COMBINER[1]),
            cv=cv,
            n_jobs=n_jobs,
            input_shape=(1, 8, 8),
            batch_size=256,
            device=args.device,
        )

    fit_ref, reference = timed(lambda: ReferenceDNR(net, folds).fit(X_train, y_train))
    fit_ours, dnr = timed(lambda: skadv_dnr(1).fit(X_train, y_train), repeat=2)
    skadv_dnr(args.n_jobs).fit(X_train[:100], y_train[:100])  # start the joblib workers
    fit_parallel, _ = timed(lambda: skadv_dnr(args.n_jobs).fit(X_train, y_train), repeat=2)
    ref_times, our_times = [], []
    for _ in range(args.repeats):
        ref_times.append(timed(lambda: reference.decision_function(X_test)))
        our_times.append(timed(lambda: dnr.decision_function(X_test)))
    predict_ref, expected = min(ref_times, key=lambda r: r[0])
    predict_ours, decision = min(our_times, key=lambda r: r[0])
    X_large = np.tile(X_test, (20, 1))  # throughput on more rows (the GPU needs them)
    predict_large, _ = timed(lambda: dnr.decision_function(X_large), repeat=3)

    report = {
        "benchmark": "DeepNeuralRejection fit/predict vs plain scikit-learn DNR (secml structure)",
        "data": {"dataset": "sklearn digits (1, 8, 8)", "n_train": len(X_train), "n_test": len(X_test)},
        "layers": {name: {"C": C, "gamma": g, "n_features": int(layer_output(net, name, X_test[:1]).shape[1])} for name, (C, g) in LAYERS.items()},
        "folds": len(folds),
        "skadv": {
            "fit_s": round(fit_ours, 3),
            f"fit_s_n_jobs_{args.n_jobs}": round(fit_parallel, 3),
            "predict_rows_per_s": round(len(X_test) / predict_ours, 1),
            f"predict_rows_per_s_{len(X_large)}_rows": round(len(X_large) / predict_large, 1),
            "device": args.device,
            "support_vectors_per_layer": [int(len(e.support_)) for e in dnr.layer_estimators_],
        },
        "sklearn_reference": {
            "fit_s": round(fit_ref, 3),
            "predict_rows_per_s": round(len(X_test) / predict_ref, 1),
        },
        "speedup": {
            "fit_n_jobs_1": round(fit_ref / fit_ours, 2),
            f"fit_n_jobs_{args.n_jobs}": round(fit_ref / fit_parallel, 2),
            "predict": round(predict_ref / predict_ours, 2),
        },
        "max_abs_decision_diff": float(np.abs(decision[:, :10] - expected).max()),
        "same_predictions": bool(np.array_equal(decision[:, :10].argmax(1), expected.argmax(1))),
        "environment": {
            "skadv": skadv.__version__,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
