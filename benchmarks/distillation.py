"""ModelDistillationDetector vs the same work written as a bare torch loop.

Workload: load_digits (1797 rows × 64), teacher MLP 64-128-10 (fixed random weights),
student 64-64-10, 20 epochs, batch 128, Adam lr 1e-3; scoring 100,000 rows in batches
of 1024. Prints one JSON object.

    python benchmarks/distillation.py
"""

import json
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from skadv import ModelDistillationDetector

EPOCHS, BATCH, LR, SCORE_ROWS, SCORE_BATCH = 20, 128, 1e-3, 100_000, 1024


def teacher():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).eval()


def bare_torch(X, X_score, model):
    """Hand-written equivalent: precomputed targets, manual epochs, KL score."""
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(student.parameters(), lr=LR)
    x_all = torch.from_numpy(X)
    start = time.perf_counter()
    with torch.inference_mode():
        targets = torch.softmax(model(x_all), dim=1)
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(x_all)).split(BATCH):
            log_q = torch.log_softmax(student(x_all[idx]), dim=1)
            p = targets[idx]
            loss = (torch.special.xlogy(p, p) - p * log_q).sum(1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    fit_s = time.perf_counter() - start

    start = time.perf_counter()
    scores = []
    with torch.inference_mode():
        for x in torch.from_numpy(X_score).split(SCORE_BATCH):
            log_p = torch.log_softmax(model(x), dim=1)
            log_q = torch.log_softmax(student(x), dim=1)
            scores.append((log_p.exp() * (log_p - log_q)).sum(1))
    torch.cat(scores).numpy()
    score_s = time.perf_counter() - start
    return fit_s, score_s


def skadv_run(X, X_score, model):
    det = ModelDistillationDetector(model, epochs=EPOCHS, batch_size=BATCH, lr=LR, random_state=0)
    start = time.perf_counter()
    det.fit(X)
    fit_s = time.perf_counter() - start
    det.set_params(inference_batch_size=SCORE_BATCH)
    start = time.perf_counter()
    det.adversarial_score(X_score)
    score_s = time.perf_counter() - start
    return fit_s, score_s


def main():
    X = (load_digits().data / 16.0).astype(np.float32)
    X_score = np.resize(X, (SCORE_ROWS, 64))
    model = teacher()
    skadv_run(X[:256], X_score[:2048], model)  # warm-up: imports, allocator
    bare_fit, bare_score = bare_torch(X, X_score, model)
    skadv_fit, skadv_score = skadv_run(X, X_score, model)
    print(json.dumps({
        "benchmark": "model_distillation",
        "workload": {"train_rows": len(X), "epochs": EPOCHS, "batch_size": BATCH, "score_rows": SCORE_ROWS},
        "torch_threads": torch.get_num_threads(),
        "skadv": {"fit_seconds": round(skadv_fit, 3), "score_rows_per_s": round(SCORE_ROWS / skadv_score)},
        "bare_torch": {"fit_seconds": round(bare_fit, 3), "score_rows_per_s": round(SCORE_ROWS / bare_score)},
        "fit_ratio_skadv_over_bare": round(skadv_fit / bare_fit, 2),
        "score_throughput_ratio_skadv_over_bare": round(bare_score / skadv_score, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
