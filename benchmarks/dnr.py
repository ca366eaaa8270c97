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

``--scale seed`` runs the workload of secml's DNR tutorial instead: 28x28 digits from
:func:`skadv.datasets.load_digits28`, the tutorial's CNN (trained through skorch), layers
relu2/relu3/relu4 (18432/6400/4096 features) with its C and gamma, and reports fit
seconds and predict rows/s at ``--sizes`` training rows for skadv's exact DNR (float64
and float32 kernels), skadv's approximate DNR (:class:`skadv.NystroemOneVsAll` layers)
and, with ``--secml-python``, secml 0.15.6 itself, built as its tutorial builds it
(``benchmarks/dnr_secml.py`` in its own environment, reading and writing files in a temporary
folder; its predict is timed best of ``--repeats`` too), plus a batched PGD
line-search attack on DNR against secml's per-sample one. ``--approx-only-sizes`` adds
sizes (e.g. 10000 20000) where only the approximate DNR is fitted; ``--noise-floor`` fits
a second exact DNR with other cross-validation folds and reports how far the two exact
models agree (the bar for the approximate one); ``--landmark-sweep 0.4 0.8 1`` fits, for
each share of the training rows drawn as landmarks, a DNR whose first layer (relu2) is
libsvm's exact hinge-loss SVM on those Nystroem features and whose other parts are exact, and
reports its agreement with the exact DNR (how many landmarks that layer needs, whatever the
linear solver); ``--skip-attack`` leaves the attack out. ``--quality`` instead reports what
users see: clean accuracy with rejection (threshold rejecting 10 % of held-out clean rows) and
the AUROC of non-adaptive PGD rows, for the exact DNR, the exact DNR with other folds (the noise
floor) and the approximate one (``--first-layer-components`` and ``--combiner-components`` set
the landmarks of relu2 and of the combiner); ``--large-fit 60000`` only fits the approximate DNR
on that many rows and reports its wall and CPU seconds and the process's peak memory. secml's
environment is built as its users install it (Python 3.10, secml 0.15.6 with PyPI's torch 2.4.1) by
``benchmarks/setup_peers.sh``; measure on a quiet machine, both in one run::

    bash benchmarks/setup_peers.sh ~/peer-venvs
    python benchmarks/dnr.py --scale seed --sizes 1000 2500 5000 --secml-python ~/peer-venvs/secml/bin/python

A secml fit several times slower than the user guide's figures for the same workload means a
broken peer environment (BLAS, thread limits), not a fast skadv: fix it before quoting a ratio.
"""

import argparse
import functools
import json
import os
import platform
import sys
import time
from collections import OrderedDict

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_digits
from sklearn.kernel_approximation import Nystroem
from sklearn.model_selection import KFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import SVC
from torch import nn

import skadv

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from skadv import DeepNeuralRejection, NystroemOneVsAll, OneVsAllSVC

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


def seed_dnr(cnn, *, approximate=False, n_components=1000, n_jobs=-1, device="cpu", random_state=0,
             gram_dtype="float64", first_layer_components=None, combiner_components=None):
    """The tutorial's DNR on the seed CNN: exact (OneVsAllSVC) or approximate (NystroemOneVsAll) layers.

    The approximate one draws ``n_components`` landmarks per layer, ``first_layer_components``
    for relu2 and ``combiner_components`` for the combiner (None: ``n_components``).
    """
    from _seed_cnn import COMBINER, INPUT_SHAPE, LAYERS

    def layer_clf(C, gamma, m=None):
        if approximate:
            return NystroemOneVsAll(C=C, gamma=gamma, n_components=m or n_components, random_state=random_state)
        return OneVsAllSVC(C=C, gamma=gamma, gram_dtype=gram_dtype)

    return DeepNeuralRejection(
        cnn,
        layers=[(name, layer_clf(C, gamma, first_layer_components if i == 0 else None))
                for i, (name, (C, gamma)) in enumerate(LAYERS.items())],
        combiner=layer_clf(*COMBINER, combiner_components),
        n_jobs=n_jobs,
        input_shape=INPUT_SHAPE,
        batch_size=256,
        device=device,
        random_state=random_state,
    )


def train_seed_cnn(X, y, epochs, seed=0):
    """secml's tutorial CNN trained through skorch on 28x28 rows."""
    from _seed_cnn import SeedCNN
    from skorch import NeuralNetClassifier

    torch.manual_seed(seed)
    net = NeuralNetClassifier(
        SeedCNN, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-3, max_epochs=epochs,
        batch_size=64, train_split=None, iterator_train__shuffle=True, verbose=0,
    ).fit(X.reshape(-1, 1, 28, 28), y)
    return net.module_.eval()


class NystroemHingeOneVsAll(ClassifierMixin, BaseEstimator):
    """libsvm's exact hinge-loss SVMs (one-vs-rest) on Nystroem features of a share of the rows.

    The best any linear one-vs-all SVM can do on those features: ``--landmark-sweep`` puts
    it in the place of one layer's SVMs to see how many landmarks the approximation needs.
    ``landmark_fraction`` of the rows of each fit are drawn as landmarks, so that the
    cross-validation fits and the final fit approximate the kernel alike. Its fit is
    quadratic in the rows (libsvm on the Gram matrix of the features): a measurement, not a
    candidate for large training sets.
    """

    def __init__(self, C=1.0, gamma=1.0, landmark_fraction=0.4, random_state=0):
        self.C, self.gamma, self.landmark_fraction, self.random_state = C, gamma, landmark_fraction, random_state

    def fit(self, X, y):
        n_components = max(1, round(self.landmark_fraction * len(X)))
        self.nystroem_ = Nystroem(gamma=self.gamma, n_components=n_components, random_state=self.random_state).fit(X)
        self.features_ = self.nystroem_.transform(X)
        self.svc_ = OneVsRestClassifier(SVC(kernel="precomputed", C=self.C)).fit(self.features_ @ self.features_.T, y)
        self.classes_ = self.svc_.classes_
        return self

    def decision_function(self, X):
        return self.svc_.decision_function(self.nystroem_.transform(X) @ self.features_.T)


def decisions(dnr, X, rej_percent=0.1):
    """Labels with -1 for the rows rejected at the threshold that rejects ``rej_percent`` of ``X``."""
    return dnr.set_params(threshold=dnr.compute_threshold(X, rej_percent)).predict(X)


def agreement(scores, decided, other_scores, other_decided):
    """Same argmax, same decisions (label or reject) and rows rejected by one model only."""
    return {
        "same_argmax": float(np.mean(scores[:, :-1].argmax(1) == other_scores[:, :-1].argmax(1))),
        "same_decisions_10pct_reject": float(np.mean(decided == other_decided)),
        # Where the decisions differ: rows one model rejects and the other accepts.
        "rejected_by_one_only": int(np.sum((decided == -1) != (other_decided == -1))),
    }


def quality(dnr, X_val, X_test, y_test, X_attack, reject=0.1):
    """Clean accuracy with rejection and PGD AUROC, the threshold rejecting ``reject`` of held-out clean rows.

    A rejected clean row counts as an error; the AUROC separates the clean test rows from
    the attacked ones by DNR's score (its highest class score, lower = more adversarial).
    """
    from skadv.metrics import accuracy_with_rejection, detection_auroc

    dnr.set_params(threshold=dnr.compute_threshold(X_val, reject))
    scores = dnr.decision_function(X_test)
    predicted = np.where(scores[:, :-1].max(1) < scores[0, -1], -1, dnr.classes_[scores[:, :-1].argmax(1)])
    return {
        "clean_accuracy_with_rejection": round(float(accuracy_with_rejection(y_test, predicted)), 4),
        "clean_accuracy": round(float(np.mean(dnr.classes_[scores[:, :-1].argmax(1)] == y_test)), 4),
        "pgd_auroc": round(detection_auroc(-scores[:, :-1].max(1), -dnr.score_samples(X_attack)), 4),
    }


def quality_main(args):
    """``--quality``: exact, exact with other folds (the noise floor) and approximate DNR at ``--sizes``."""
    from skadv.attacks import PGD
    from skadv.datasets import load_digits28

    n_train = max(args.sizes)
    n_val = n_test = args.n_test
    X, y = load_digits28(n_train + n_val + n_test, random_state=0)
    X_val, X_test, y_test = X[n_train : n_train + n_val], X[n_train + n_val :], y[n_train + n_val :]
    start = time.perf_counter()
    cnn_rows = min(args.cnn_rows, n_train)  # the CNN never sees the held-out rows
    cnn = train_seed_cnn(X[:cnn_rows], y[:cnn_rows], args.epochs)
    pgd = PGD(cnn, eps=args.pgd_eps, step_size=0.01, max_iter=40, random_state=0, input_shape=(1, 28, 28))
    X_attack = pgd.generate(X_test[: args.attack_rows], y_test[: args.attack_rows])
    report = {
        "benchmark": "DNR quality: exact, exact with other folds, approximate (seed CNN on 28x28 digits)",
        "data": {"dataset": "skadv.datasets.load_digits28", "n_val": n_val, "n_test": n_test,
                 "cnn_rows": cnn_rows, "cnn_epochs": args.epochs, "setup_s": round(time.perf_counter() - start, 1),
                 "threshold": "rejects 10 % of the held-out clean rows (n_val)",
                 "attack": f"PGD Linf eps={args.pgd_eps}, 40 steps of 0.01, against the CNN alone, "
                           f"the first {args.attack_rows} test rows"},
        "approximate": {"n_components": args.n_components, "first_layer_components": args.first_layer_components,
                        "combiner_components": args.combiner_components},
        "sizes": {},
    }
    models = {
        "exact": dict(random_state=0),
        "exact_other_folds": dict(random_state=1),
        "approximate": dict(approximate=True, n_components=args.n_components,
                            first_layer_components=args.first_layer_components,
                            combiner_components=args.combiner_components),
    }
    for n in sorted(args.sizes):
        entry = report["sizes"][str(n)] = {}
        for name, params in models.items():
            if name != "approximate" and n > args.exact_up_to:
                continue
            fit_s, dnr = timed(functools.partial(
                seed_dnr(cnn, n_jobs=args.n_jobs, device=args.device, **params).fit, X[:n], y[:n]))
            entry[name] = {"fit_s": round(fit_s, 1), **quality(dnr, X_val, X_test, y_test, X_attack)}
        if "exact_other_folds" in entry:
            for metric in ("clean_accuracy_with_rejection", "pgd_auroc"):
                floor = abs(entry["exact"][metric] - entry["exact_other_folds"][metric])
                gap = entry["exact"][metric] - entry["approximate"][metric]
                entry[f"{metric}_noise_floor"] = round(floor, 4)
                # Parity: the approximation loses at most the noise floor plus half a point.
                entry[f"{metric}_parity"] = bool(gap <= floor + 0.005)
    report["environment"] = _environment()
    print(json.dumps(report, indent=2))
    return report


def large_fit_main(args):
    """``--large-fit N``: fit time and peak memory (RSS) of the approximate DNR on N rows."""
    import resource

    from skadv.datasets import load_digits28

    X, y = load_digits28(args.large_fit, random_state=0)
    cnn = train_seed_cnn(X[: args.cnn_rows], y[: args.cnn_rows], args.epochs)
    before = resource.getrusage(resource.RUSAGE_SELF)
    dnr = seed_dnr(cnn, approximate=True, n_components=args.n_components, n_jobs=args.n_jobs, device=args.device,
                   first_layer_components=args.first_layer_components,
                   combiner_components=args.combiner_components)
    fit_s, dnr = timed(functools.partial(dnr.fit, X, y))
    after = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "benchmark": "approximate DNR fit at scale (seed CNN, 28x28 digits)",
        "rows": len(X),
        "n_components": [len(e.support_) for e in dnr.layer_estimators_] + [len(dnr.combiner_.support_)],
        "fit_s": round(fit_s, 1),
        # CPU seconds of the fit, all threads: less sensitive to other people's load than wall time.
        "fit_cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
        # ru_maxrss is in KiB on Linux: the process's peak, data and CNN included.
        "peak_rss_gib": round(after.ru_maxrss / 2**20, 2),
        "peak_rss_before_fit_gib": round(before.ru_maxrss / 2**20, 2),
        "load_average": os.getloadavg(),
        "environment": _environment(),
    }
    print(json.dumps(report, indent=2))
    return report


def _environment():
    return {"skadv": skadv.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "python": platform.python_version()}


def seed_main(args):
    if args.attack_size not in args.sizes:
        # Checked first: the attack runs on a DNR fitted at one of --sizes, after minutes of fitting.
        raise SystemExit(f"--attack-size {args.attack_size} must be one of --sizes {args.sizes}.")
    import subprocess
    import tempfile
    from pathlib import Path

    from _seed_cnn import SeedCNN  # noqa: F401  (the runner loads the same class)

    from skadv.attacks import PGDLineSearch
    from skadv.datasets import load_digits28

    sizes = sorted(args.sizes)
    n_train = max(sizes + args.approx_only_sizes)
    X, y = load_digits28(n_train + args.n_test + args.attack_rows, random_state=0)
    X_train, y_train = X[:n_train], y[:n_train]
    X_test = X[n_train : n_train + args.n_test]
    X_attack, y_attack = X[n_train + args.n_test :], y[n_train + args.n_test :]
    start = time.perf_counter()
    cnn = train_seed_cnn(X_train[: args.cnn_rows], y_train[: args.cnn_rows], args.epochs)
    report = {
        "benchmark": "DNR at the seed scale (secml tutorial CNN on 28x28 digits)",
        "data": {"dataset": "skadv.datasets.load_digits28", "n_test": len(X_test), "cnn_rows": args.cnn_rows,
                 "cnn_epochs": args.epochs, "cnn_train_s": round(time.perf_counter() - start, 1)},
        "n_jobs": args.n_jobs,
        "sizes": {},
    }
    with torch.no_grad():
        logits = cnn(torch.as_tensor(X_test).reshape(-1, 1, 28, 28))
    report["data"]["cnn_test_accuracy"] = float((logits.argmax(1).numpy() == y[n_train : n_train + args.n_test]).mean())
    dnr_at = {}
    for n in sizes:
        entry = {}
        for name, approximate in (("exact", False), ("approximate", True)):
            dnr = seed_dnr(cnn, approximate=approximate, n_components=args.n_components, n_jobs=args.n_jobs,
                           device=args.device)
            fit_s, dnr = timed(functools.partial(dnr.fit, X_train[:n], y_train[:n]))
            predict_s, scores = timed(functools.partial(dnr.decision_function, X_test), repeat=args.repeats)
            entry[name] = {"fit_s": round(fit_s, 2), "predict_rows_per_s": round(len(X_test) / predict_s, 1),
                           "kernel_terms_per_layer": [len(e.support_) for e in dnr.layer_estimators_]}
            if not approximate:
                dnr.set_params(kernel_dtype="float32")
                predict32_s, scores32 = timed(functools.partial(dnr.decision_function, X_test), repeat=args.repeats)
                entry[name]["predict_rows_per_s_float32"] = round(len(X_test) / predict32_s, 1)
                entry[name]["float32_max_abs_diff"] = float(np.abs(scores32[:, :-1] - scores[:, :-1]).max())
                float64_decisions = decisions(dnr.set_params(kernel_dtype="float64"), X_test)
                entry[name]["float32_same_decisions"] = bool(np.array_equal(decisions(dnr, X_test), float64_decisions))
            dnr_at[(n, name)] = (dnr, scores)
        (exact, exact_scores), (approx, approx_scores) = dnr_at[(n, "exact")], dnr_at[(n, "approximate")]
        exact_decisions, approx_decisions = decisions(exact, X_test), decisions(approx, X_test)
        entry["approximate_vs_exact"] = agreement(exact_scores, exact_decisions, approx_scores, approx_decisions)
        # The exact DNR with float32 Gram matrices behind its layers' training kernels.
        gram32 = seed_dnr(cnn, n_jobs=args.n_jobs, device=args.device, gram_dtype="float32")
        fit_s, gram32 = timed(functools.partial(gram32.fit, X_train[:n], y_train[:n]))
        gram32_scores = gram32.decision_function(X_test)
        entry["exact_float32_gram"] = {"fit_s": round(fit_s, 2), **agreement(
            exact_scores, exact_decisions, gram32_scores, decisions(gram32, X_test))}
        if args.noise_floor:
            # Two exact DNRs that differ only in random_state (their cross-validation folds): the
            # agreement the approximation cannot be expected to beat.
            other = seed_dnr(cnn, n_jobs=args.n_jobs, device=args.device, random_state=1).fit(X_train[:n], y_train[:n])
            entry["exact_vs_exact_other_folds"] = agreement(
                exact_scores, exact_decisions, other.decision_function(X_test), decisions(other, X_test)
            )
        if args.landmark_sweep:
            # The first layer's SVMs replaced by exact hinge SVMs on Nystroem features of a share of
            # the rows, every other part exact: how many landmarks that layer needs.
            from _seed_cnn import LAYERS

            first, (C, gamma) = next(iter(LAYERS.items()))
            entry["landmark_sweep"] = {"layer": first, "solver": "libsvm hinge on Nystroem features"}
            for fraction in args.landmark_sweep:
                swept = seed_dnr(cnn, n_jobs=args.n_jobs, device=args.device).set_params(
                    **{first: NystroemHingeOneVsAll(C=C, gamma=gamma, landmark_fraction=fraction)}
                ).fit(X_train[:n], y_train[:n])
                entry["landmark_sweep"][f"{round(fraction * n)} landmarks ({fraction:g} of the rows)"] = agreement(
                    exact_scores, exact_decisions, swept.decision_function(X_test), decisions(swept, X_test)
                )
        report["sizes"][str(n)] = entry
    for n in args.approx_only_sizes:
        dnr = seed_dnr(cnn, approximate=True, n_components=args.n_components, n_jobs=args.n_jobs, device=args.device)
        fit_s, dnr = timed(functools.partial(dnr.fit, X_train[:n], y_train[:n]))
        report["sizes"].setdefault(str(n), {})["approximate"] = {"fit_s": round(fit_s, 2)}

    if not args.skip_attack:
        attack_dnr = dnr_at[(args.attack_size, "exact")][0].set_params(threshold=None, kernel_dtype="float64")
        attack = PGDLineSearch(attack_dnr, eps=args.attack_eps, step_size=args.attack_step, max_iter=args.attack_iter,
                               input_shape=(1, 28, 28))
        attack_s, _ = timed(lambda: attack.generate(X_attack, y_attack))
        report["attack"] = {"training_rows": args.attack_size, "rows": len(X_attack), "max_iter": args.attack_iter,
                            "eps_l2": args.attack_eps, "skadv_s": round(attack_s, 2),
                            "skadv_rows_per_s": round(len(X_attack) / attack_s, 3)}

    if args.secml_python:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            torch.save(cnn.state_dict(), workdir / "cnn.pt")
            np.savez(workdir / "data.npz", X_train=X_train, y_train=y_train, X_test=X_test, X_attack=X_attack,
                     y_attack=y_attack)
            secml_attack_rows = 0 if args.skip_attack else args.secml_attack_rows
            config = {"sizes": sizes, "attack_size": args.attack_size, "secml_attack_rows": secml_attack_rows,
                      "repeats": args.repeats,
                      "attack_eps": args.attack_eps, "attack_step": args.attack_step, "attack_iter": args.attack_iter}
            (workdir / "config.json").write_text(json.dumps(config))
            runner = Path(__file__).resolve().parent / "dnr_secml.py"
            env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
            done = subprocess.run(
                [args.secml_python, str(runner), str(workdir)], env=env, capture_output=True, text=True, check=False
            )
            if done.returncode != 0 and not (workdir / "secml_result.json").exists():
                report["secml"] = {"error": done.stderr[-2000:]}
            else:
                secml = json.loads((workdir / "secml_result.json").read_text())
                report["secml"] = secml
                for n, theirs in secml["sizes"].items():
                    ours = report["sizes"][n]
                    secml_scores = np.load(workdir / f"secml_scores_{n}.npy")
                    # secml appends its reject class (-1) as the last column.
                    secml_classes = secml_scores[:, :-1].argmax(1)
                    ours["vs_secml"] = {
                        "argmax_agreement": float(
                            np.mean(dnr_at[(int(n), "exact")][1][:, :-1].argmax(1) == secml_classes)
                        ),
                        "fit_speedup": round(theirs["fit_s"] / ours["exact"]["fit_s"], 2),
                        "fit_speedup_float32_gram": round(theirs["fit_s"] / ours["exact_float32_gram"]["fit_s"], 2),
                        "predict_speedup": round(ours["exact"]["predict_rows_per_s"] / theirs["predict_rows_per_s"], 2),
                        "predict_speedup_float32": round(
                            ours["exact"]["predict_rows_per_s_float32"] / theirs["predict_rows_per_s"], 2),
                    }
                    if "attack" in theirs and "attack" in report:
                        report["attack"]["secml_rows"] = theirs["attack"]["rows"]
                        report["attack"]["secml_rows_per_s"] = theirs["attack"]["rows_per_s"]
                        report["attack"]["speedup"] = round(
                            report["attack"]["skadv_rows_per_s"] / theirs["attack"]["rows_per_s"], 1)
    report["environment"] = _environment()
    print(json.dumps(report, indent=2))
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["small", "seed"], default="small")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2500, 5000], help="seed: training rows")
    parser.add_argument("--approx-only-sizes", type=int, nargs="*", default=[], help="seed: approximate-only sizes")
    parser.add_argument("--n-components", type=int, default=1000, help="seed: Nystroem landmarks per layer")
    parser.add_argument("--first-layer-components", type=int, default=None,
                        help="seed: landmarks of the first layer (relu2; default --n-components)")
    parser.add_argument("--combiner-components", type=int, default=None,
                        help="seed: landmarks of the combiner (default --n-components)")
    parser.add_argument("--quality", action="store_true",
                        help="seed: clean accuracy with rejection and PGD AUROC of exact, exact-other-folds and "
                             "approximate DNRs at --sizes")
    parser.add_argument("--exact-up-to", type=int, default=10000, help="quality: largest size with exact DNRs")
    parser.add_argument("--pgd-eps", type=float, default=0.3, help="quality: PGD Linf radius")
    parser.add_argument("--large-fit", type=int, default=None,
                        help="seed: only fit the approximate DNR on this many rows; report time and peak memory")
    parser.add_argument("--skip-attack", action="store_true", help="seed: do not time the attack")
    parser.add_argument("--noise-floor", action="store_true",
                        help="seed: also fit an exact DNR with other folds (random_state=1) and report its agreement")
    parser.add_argument("--landmark-sweep", type=float, nargs="*", default=[],
                        help="seed: shares of the rows drawn as landmarks for the first layer's hinge SVMs")
    parser.add_argument("--cnn-rows", type=int, default=3000, help="seed: rows that train the CNN")
    parser.add_argument("--epochs", type=int, default=3, help="seed: CNN epochs")
    parser.add_argument("--attack-size", type=int, default=2500, help="seed: training rows of the attacked DNR")
    parser.add_argument("--attack-rows", type=int, default=100)
    parser.add_argument("--secml-attack-rows", type=int, default=3, help="seed: rows of secml's (slow) attack")
    parser.add_argument("--attack-iter", type=int, default=30)
    parser.add_argument("--attack-eps", type=float, default=2.0)
    parser.add_argument("--attack-step", type=float, default=0.1)
    parser.add_argument("--secml-python", default=None, help="seed: python of an environment with secml 0.15.6")
    parser.add_argument("--n-train", type=int, default=1200)
    parser.add_argument("--n-test", type=int, default=597)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both paths (default: torch's)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved predict timings per path")
    parser.add_argument("--device", default="cpu", help="skadv's device ('cuda' times skadv on the GPU)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.scale == "seed":
        if args.n_test == 597:
            args.n_test = 1000
        args.n_jobs = -1 if args.n_jobs == 2 else args.n_jobs
        if args.large_fit:
            return large_fit_main(args)
        if args.quality:
            return quality_main(args)
        return seed_main(args)

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
        "layers": {
            name: {"C": C, "gamma": g, "n_features": int(layer_output(net, name, X_test[:1]).shape[1])}
            for name, (C, g) in LAYERS.items()
        },
        "folds": len(folds),
        "skadv": {
            "fit_s": round(fit_ours, 3),
            f"fit_s_n_jobs_{args.n_jobs}": round(fit_parallel, 3),
            "predict_rows_per_s": round(len(X_test) / predict_ours, 1),
            f"predict_rows_per_s_{len(X_large)}_rows": round(len(X_large) / predict_large, 1),
            "device": args.device,
            "support_vectors_per_layer": [len(e.support_) for e in dnr.layer_estimators_],
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
