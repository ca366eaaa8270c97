"""``python -m skadv evaluate``: the evaluation on a user's importable model factory and an .npz."""

import importlib
import os
import sys
import textwrap
import time

import numpy as np
import torch

from ..evaluation import describe_budget, evaluate
from ._output import print_report, section


def load_model(spec, weights=None):
    """The object named by ``module.path:attribute`` (called when it is a factory), with ``weights`` loaded."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"--model must be MODULE:FACTORY, e.g. mypkg.models:make_net; got {spec!r}.")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the user's modules in the current folder, as `python -m` does
    module = importlib.import_module(module_name)
    try:
        obj = getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"{module_name} has no attribute {attribute!r} (from --model {spec}).") from None
    model = obj if isinstance(obj, torch.nn.Module) else obj()
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        target = model if isinstance(model, torch.nn.Module) else getattr(model, "module_", None)
        if target is None:
            raise ValueError(f"--weights needs a torch module (or a skorch net with module_); got {type(model)}.")
        target.load_state_dict(state)
    if isinstance(model, torch.nn.Module):
        model.eval()
    return model


def load_data(path):
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in ("X", "y") if key not in data.files]
        if missing:
            raise ValueError(f"{path} lacks {', '.join(missing)}: it must hold arrays X and y (has {data.files}).")
        return data["X"], data["y"]


def run_evaluate(args):
    start = time.perf_counter()
    section(f"evaluate: model {args.model} on {args.data}")
    model = load_model(args.model, args.weights)
    X, y = load_data(args.data)
    clip_values = None if args.no_clip else tuple(args.clip_values)
    print(f"{X.shape[0]} rows of shape {X.shape[1:]}, values in [{X.min():g}, {X.max():g}], "
          f"{len(np.unique(y))} classes; clip_values={clip_values}")
    print(textwrap.fill(f"budget {args.budget}: {describe_budget(args.budget)}.", width=100), flush=True)
    report = evaluate(
        model, X, y, detectors=args.detectors, clip_values=clip_values,
        input_shape=None if args.input_shape is None else tuple(args.input_shape), eps=args.eps,
        adaptive_eps=args.adaptive_eps, fpr=args.fpr, budget=args.budget, n_seeds=args.seeds,
        random_state=args.seed, verbose=0 if args.quiet else 1,
    )
    section("results")
    print_report(report, args.format)
    section("files")
    for path in report.save(args.out):
        print(path)
    print(f"\nfinished in {time.perf_counter() - start:.0f} s")
    return report
