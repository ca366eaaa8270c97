"""Fidelity of AdversarialAEDetector to alibi-detect's AdversarialAE: detection and correction on the same rows.

Workload: scikit-learn's digits (/16), two thirds for training (``random_state=0`` split);
a torch MLP classifier ``64-hidden-10`` trained on them; L-inf PGD (ε=0.2, step 0.02,
40 steps, random start) on the held-out third. Both detectors protect the same
classifier weights, train the autoencoder ``64-128-32 / 32-128-64`` with a sigmoid output
(20 epochs of Adam, lr 1e-3, batch 64) on the training rows, take their threshold at the
95th percentile of the training scores, and are measured on the same clean and attacked
held-out rows: detection AUROC, and the accuracy of ``correct()`` on the attacked rows
(``corrected``: the reconstruction's class where flagged) and of the reconstruction's
class alone (``defense``). One seed is noise: each side trains under every ``--seeds``.

Knobs that tell the candidate causes of a difference apart:

- ``--init``: skadv's initial autoencoder, ``torch`` (``nn.Linear``'s default) or ``keras``
  (Keras ``Dense``'s default: Glorot-uniform weights, zero biases).
- ``--alibi-init given``: alibi-detect starts from skadv's initial weights of the same seed.
- ``--adam-eps``: skadv's Adam epsilon (torch's 1e-8; Keras' is 1e-7).
- ``--kl-clip``: skadv's ``kl_clip`` (Keras' ``kld`` clips both distributions to [1e-7, 1]).
- ``--alibi-shuffle-buffer``: alibi-detect's trainer shuffles through a 1024-row buffer;
  give the training row count for a full shuffle.

Measured (under load; seeds 0-3, alibi-detect 0.13.0): which initial weights the autoencoder
starts from moves AUROC by ±0.04 and correction accuracy by ±0.02 on either side; started
from the same weights (``--init keras --kl-clip 1e-7 --adam-eps 1e-7 --alibi-init given
--alibi-shuffle-buffer <rows>``) the two land within about 0.015 AUROC of each other per
seed, and neither Keras' initialisation, Adam's epsilon nor the clipped KL moves skadv's
means beyond that spread.

alibi-detect runs in its own environment (``benchmarks/adversarial_ae_alibi.py``), reading
and writing files in a temporary folder; without ``--alibi-python`` only skadv runs.
``benchmarks/setup_peers.sh`` builds that environment as alibi-detect's users install it
(``alibi-detect[tensorflow]==0.13.0``). Prints JSON::

    bash benchmarks/setup_peers.sh ~/peer-venvs
    python benchmarks/adversarial_ae_fidelity.py --seeds 0 1 2 3 4 --alibi-python ~/peer-venvs/alibi/bin/python
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from torch import nn

import skadv
from skadv import AdversarialAEDetector
from skadv.attacks import PGD

EPOCHS, BATCH, LR, THRESHOLD_PERC = 20, 64, 1e-3, 95.0
EPS, STEP, N_ITER = 0.2, 0.02, 40


def workload(hidden):
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=1 / 3, random_state=0, stratify=y)
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    optimizer = torch.optim.Adam(classifier.parameters(), lr=0.01)
    x, t = torch.from_numpy(X_train), torch.from_numpy(y_train)
    for _ in range(200):
        optimizer.zero_grad()
        nn.functional.cross_entropy(classifier(x), t).backward()
        optimizer.step()
    classifier.eval()
    X_adv = PGD(classifier, eps=EPS, step_size=STEP, max_iter=N_ITER, random_state=0).generate(X_test, y_test)
    return classifier, X_train, X_test, y_test, X_adv.astype(np.float32)


def make_autoencoder(seed, init):
    """The 64-128-32 / 32-128-64 sigmoid autoencoder, initialised as torch or Keras would."""
    torch.manual_seed(seed)
    ae = nn.Sequential(
        nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32)),
        nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 64), nn.Sigmoid()),
    )
    if init == "keras":
        for layer in ae.modules():
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
    return ae


def keras_dense_weights(module):
    """[kernel (in, out), bias, ...] of the Linear layers in order: Keras' layout."""
    out = []
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            out += [layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy()]
    return out


def adam_with_eps(eps):
    class Adam(torch.optim.Adam):
        def __init__(self, params, lr=1e-3, **kwargs):
            super().__init__(params, lr=lr, eps=eps, **kwargs)

    return Adam


def evaluate(score, pred, pred_recon, n_train, n_test, y_test):
    """Metrics from scores and predictions of [train rows, clean test rows, attacked test rows]."""
    threshold = np.percentile(score[:n_train], THRESHOLD_PERC)
    clean, adv = slice(n_train, n_train + n_test), slice(n_train + n_test, None)
    flagged = score > threshold
    corrected = np.where(flagged, pred_recon, pred)
    return {
        "auroc": roc_auc_score(np.r_[np.zeros(n_test), np.ones(n_test)], np.r_[score[clean], score[adv]]),
        "corrected_acc_adv": float((corrected[adv] == y_test).mean()),
        "defense_acc_adv": float((pred_recon[adv] == y_test).mean()),
        "corrected_acc_clean": float((corrected[clean] == y_test).mean()),
        "tpr": float(flagged[adv].mean()),
    }


def summarise(per_seed):
    keys = per_seed[0].keys()
    return {
        key: f"{np.mean([m[key] for m in per_seed]):.4f} ± {np.std([m[key] for m in per_seed]):.4f} "
        f"{[round(float(m[key]), 3) for m in per_seed]}"
        for key in keys
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--hidden", type=int, default=128, help="hidden units of the classifier")
    parser.add_argument("--init", choices=["torch", "keras"], default="torch")
    parser.add_argument("--adam-eps", type=float, default=None, help="Adam epsilon (default: the detector's)")
    parser.add_argument("--kl-clip", type=float, default=None, help="the detector's kl_clip (default: its default)")
    parser.add_argument("--alibi-python", default=None)
    parser.add_argument("--alibi-init", choices=["keras", "given"], default="keras")
    parser.add_argument("--alibi-shuffle-buffer", type=int, default=None)
    parser.add_argument("--skip-skadv", action="store_true")
    args = parser.parse_args()

    classifier, X_train, X_test, y_test, X_adv = workload(args.hidden)
    X_score = np.concatenate([X_train, X_test, X_adv])
    n_train, n_test = len(X_train), len(X_test)
    report = {
        "benchmark": "adversarial_ae_fidelity",
        "settings": {k: v for k, v in vars(args).items() if k != "alibi_python"},
        "classifier_acc_clean": float((classifier(torch.from_numpy(X_test)).argmax(1).numpy() == y_test).mean()),
        "classifier_acc_adv": float((classifier(torch.from_numpy(X_adv)).argmax(1).numpy() == y_test).mean()),
        "versions": {"skadv": skadv.__version__, "torch": torch.__version__},
    }

    alibi = None
    with tempfile.TemporaryDirectory() as workdir:
        if args.alibi_python:
            workdir = Path(workdir)
            arrays = {"X_train": X_train, "X_score": X_score}
            arrays.update({f"clf_{i}": w for i, w in enumerate(keras_dense_weights(classifier))})
            for seed in args.seeds:
                weights = keras_dense_weights(make_autoencoder(seed, args.init))
                arrays.update({f"ae_{seed}_{i}": w for i, w in enumerate(weights)})
            np.savez(workdir / "data.npz", **arrays)
            config = {"workload": "digits-mlp", "seeds": args.seeds, "epochs": EPOCHS, "batch_size": BATCH, "lr": LR,
                      "init": args.alibi_init, "shuffle_buffer": args.alibi_shuffle_buffer}
            (workdir / "config.json").write_text(json.dumps(config))
            runner = Path(__file__).resolve().parent / "adversarial_ae_alibi.py"
            alibi = subprocess.Popen([args.alibi_python, str(runner), str(workdir)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})

        if not args.skip_skadv:
            per_seed = []
            for seed in args.seeds:
                params = {}
                if args.adam_eps is not None:
                    params["optimizer"] = adam_with_eps(args.adam_eps)
                if args.kl_clip is not None:
                    params["kl_clip"] = args.kl_clip
                detector = AdversarialAEDetector(
                    classifier, ae=make_autoencoder(seed, args.init), epochs=EPOCHS, batch_size=BATCH, lr=LR,
                    random_state=seed, **params,
                ).fit(X_train)
                result = detector.correct(X_score)
                per_seed.append(evaluate(result.instance_score, result.no_defense, result.defense, n_train, n_test,
                                         y_test))
            report["skadv"] = summarise(per_seed)

        if alibi is not None:
            _, stderr = alibi.communicate()
            if alibi.returncode:
                sys.exit(f"alibi-detect runner failed:\n{stderr[-3000:]}")
            per_seed, agreement = [], []
            with torch.no_grad():
                torch_pred = classifier(torch.from_numpy(X_score)).argmax(1).numpy()
            for seed in args.seeds:
                out = np.load(workdir / f"alibi_{seed}.npz")
                per_seed.append(evaluate(out["score"], out["pred"], out["pred_recon"], n_train, n_test, y_test))
                agreement.append(float((out["pred"] == torch_pred).mean()))
            report["alibi_detect"] = summarise(per_seed)
            # The Keras copy of the classifier must predict as the torch one does.
            report["alibi_detect"]["classifier_agreement_with_torch"] = min(agreement)
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
