"""Throughput of skadv's attacks against ART's on the same torch model (digits MLP).

Prints one JSON object: seconds and accuracy under attack per attack, for skadv and,
when installed, the adversarial-robustness-toolbox.

    python benchmarks/attacks.py [--n 1000] [--threads 1]
"""

import argparse
import json
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits

from skadv.attacks import FGSM, PGD, CarliniWagnerL2, PGDLineSearch


def _train_mlp(X, y, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    X_t, y_t = torch.as_tensor(X), torch.as_tensor(y)
    for _ in range(200):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(X_t), y_t).backward()
        optimizer.step()
    return model.eval()


def _accuracy(model, X, y):
    with torch.no_grad():
        return float((model(torch.as_tensor(X)).argmax(1).numpy() == y).mean())


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(n=1000, threads=1):
    torch.set_num_threads(threads)
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    model = _train_mlp(X[:1000], y[:1000])
    rng = np.random.RandomState(0)
    idx = rng.choice(len(X), size=n, replace=n > len(X))
    X_eval, y_eval = X[idx], y[idx]

    skadv_attacks = {
        "fgsm_linf_0.1": FGSM(model, eps=0.1),
        "pgd_linf_0.1_40x0.01": PGD(model, eps=0.1, step_size=0.01, max_iter=40, random_state=0),
        "pgd_l2_1.0_40x0.1": PGD(model, norm=2, eps=1.0, step_size=0.1, max_iter=40, random_state=0),
        "pgd_line_search_l2_1.0_40": PGDLineSearch(model, eps=1.0, max_iter=40),
        "carlini_wagner_l2_5x100": CarliniWagnerL2(model, initial_const=1.0, learning_rate=0.05),
    }
    report = {"n_samples": n, "threads": threads, "clean_accuracy": _accuracy(model, X_eval, y_eval),
              "skadv": {}, "art": {}}
    FGSM(model).generate(X_eval[:10])  # warm-up: first torch calls pay one-off costs
    for name, attack in skadv_attacks.items():
        X_adv, seconds = _timed(lambda attack=attack: attack.generate(X_eval, y_eval))
        report["skadv"][name] = {"seconds": round(seconds, 4), "accuracy": _accuracy(model, X_adv, y_eval)}

    try:
        from art.attacks.evasion import CarliniL2Method, FastGradientMethod, ProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        report["art"] = None
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=(64,),
                                    nb_classes=10, clip_values=(0.0, 1.0))
            art_attacks = {
                "fgsm_linf_0.1": FastGradientMethod(clf, eps=0.1),
                "pgd_linf_0.1_40x0.01": ProjectedGradientDescent(
                    clf, eps=0.1, eps_step=0.01, max_iter=40, num_random_init=1, verbose=False),
                "pgd_l2_1.0_40x0.1": ProjectedGradientDescent(
                    clf, norm=2, eps=1.0, eps_step=0.1, max_iter=40, num_random_init=1, verbose=False),
                "carlini_wagner_l2_5x100": CarliniL2Method(
                    clf, initial_const=1.0, binary_search_steps=5, max_iter=100, learning_rate=0.05,
                    batch_size=256, verbose=False),
            }
            y_onehot = np.eye(10)[y_eval]
            for name, attack in art_attacks.items():
                X_adv, seconds = _timed(lambda attack=attack: attack.generate(X_eval, y=y_onehot))
                report["art"][name] = {"seconds": round(seconds, 4), "accuracy": _accuracy(model, X_adv, y_eval)}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    main(**vars(parser.parse_args()))
