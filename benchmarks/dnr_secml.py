"""secml 0.15.6's DNR on the seed-scale workload, for benchmarks/dnr.py (run in secml's own environment).

Reads ``<workdir>/config.json``, ``data.npz`` and ``cnn.pt`` (the CNN's state dict)
written by ``benchmarks/dnr.py --scale seed``, fits secml's ``CClassifierDNR`` with the
tutorial's layers and SVMs, times fit, predict and its per-sample PGD line-search
attack, and writes ``<workdir>/secml_result.json`` and ``secml_scores_<n>.npy``.

Usage: ``<secml venv>/bin/python benchmarks/dnr_secml.py WORKDIR``.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _seed_cnn import COMBINER, INPUT_SHAPE, LAYERS, SeedCNN


def main(workdir):
    from secml.adv.attacks.evasion import CAttackEvasionPGDLS
    from secml.array import CArray
    from secml.ml.classifiers import CClassifierPyTorch, CClassifierSVM
    from secml.ml.classifiers.reject import CClassifierDNR
    from secml.ml.kernels import CKernelRBF

    workdir = Path(workdir)
    config = json.loads((workdir / "config.json").read_text())
    data = np.load(workdir / "data.npz")
    net = SeedCNN()
    net.load_state_dict(torch.load(workdir / "cnn.pt", weights_only=True))
    net.eval()
    dnn = CClassifierPyTorch(
        net, input_shape=INPUT_SHAPE, pretrained=True, pretrained_classes=CArray.arange(10), batch_size=256
    )
    names = [name.replace(".", ":") for name in LAYERS]  # secml names layers inside Sequentials with ':'

    def ova(C, gamma):
        # As the tutorial builds them: CClassifierSVM is one-vs-all itself and computes the
        # kernel once for all classes (wrapping it in CClassifierMulticlassOVA recomputes it
        # for every class, about 4x slower on this workload).
        return CClassifierSVM(kernel=CKernelRBF(gamma=gamma), C=C)

    result = {"secml": __import__("secml").__version__, "torch": torch.__version__,
              "torch_threads": torch.get_num_threads(), "sizes": {}}
    X_test = CArray(data["X_test"].astype(np.float64))
    for n in config["sizes"]:
        X, y = CArray(data["X_train"][:n].astype(np.float64)), CArray(data["y_train"][:n])
        dnr = CClassifierDNR(ova(*COMBINER), {name: ova(*LAYERS[key]) for name, key in zip(names, LAYERS)}, dnn,
                             names, threshold=-np.inf)
        start = time.perf_counter()
        dnr.fit(X, y)
        fit_s = time.perf_counter() - start
        predict_s = np.inf
        for _ in range(config.get("repeats", 1)):  # best of, as skadv's timings
            start = time.perf_counter()
            scores = dnr.decision_function(X_test)
            predict_s = min(predict_s, time.perf_counter() - start)
        np.save(workdir / f"secml_scores_{n}.npy", scores.tondarray())
        entry = {"fit_s": round(fit_s, 3), "predict_s": round(predict_s, 3),
                 "predict_rows_per_s": round(X_test.shape[0] / predict_s, 1)}
        if n == config["attack_size"] and config["secml_attack_rows"] > 0:
            rows = config["secml_attack_rows"]
            attack = CAttackEvasionPGDLS(
                classifier=dnr, double_init=False, distance="l2", dmax=config["attack_eps"], lb=0, ub=1,
                solver_params={"eta": config["attack_step"], "eta_min": config["attack_step"], "eta_max": None,
                               "max_iter": config["attack_iter"], "eps": 1e-6},
            )
            X_attack, y_attack = CArray(data["X_attack"][:rows].astype(np.float64)), CArray(data["y_attack"][:rows])
            start = time.perf_counter()
            attack.run(X_attack, y_attack)
            attack_s = time.perf_counter() - start
            entry["attack"] = {"rows": rows, "max_iter": config["attack_iter"], "seconds": round(attack_s, 3),
                               "rows_per_s": round(rows / attack_s, 3)}
        result["sizes"][str(n)] = entry
        (workdir / "secml_result.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), indent=2))
