"""Argument parsing of ``python -m skadv``."""

import argparse
import sys

from .._version import __version__
from ..evaluation import BUDGETS, DEFAULT_DETECTORS, describe_budget

WORKLOADS = ("digits-mlp", "digits-cnn", "digits28-cnn")
FORMATS = ("text", "markdown", "csv")


def _budget_help():
    lines = ["budgets (--budget):"]
    for name in BUDGETS:
        lines.append(f"  {name}: {describe_budget(name)}.")
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m skadv",
        description="skadv: adversarial-example detectors for scikit-learn and PyTorch. Every command runs the "
        "evaluation protocol of skadv.evaluation.evaluate and prints its table (progress on stderr).",
    )
    parser.add_argument("--version", action="version", version=f"skadv {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{demo,benchmark,evaluate}")

    demo = commands.add_parser("demo", help="end-to-end run of the MSP baseline and the four detectors on "
                               "load_digits, with figures")
    demo.add_argument("--out", default="skadv_demo", help="folder for the report and PNG figures "
                      "(default: skadv_demo)")
    demo.add_argument("--quick", action="store_true", help="small settings (about a minute on 2 cores)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")

    benchmark = commands.add_parser("benchmark", help="the seven detectors on one workload: one table and a figure")
    benchmark.add_argument("--workload", default="digits-cnn", choices=WORKLOADS,
                           help="the classifier and data to protect (default: digits-cnn)")
    benchmark.add_argument("--quick", action="store_true",
                           help="smoke test: small settings (about a minute), numbers marked as not a benchmark")
    benchmark.add_argument("--out", default="skadv_benchmark",
                           help="folder for the CSV, markdown, PNG and HTML (default: skadv_benchmark)")
    benchmark.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    benchmark.add_argument("--format", default="text", choices=FORMATS,
                           help="table printed: text (headline rates, fits 100 columns; default), markdown "
                           "(every column) or csv; the files hold every column")
    benchmark.add_argument("--quiet", action="store_true", help="no progress (the table still prints)")

    evaluate = commands.add_parser(
        "evaluate", help="evaluate detectors on your own model and data",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fit skadv's detectors next to your model, fix their thresholds on held-out clean rows, "
        "attack (non-adaptive FGSM, PGD, C&W; adaptive AutoAttack with failure checks), corrupt images, and "
        "report every rate with a bootstrap confidence interval (skadv.evaluation.evaluate).",
        epilog=_budget_help() + "\n\nExample:\n  python -m skadv evaluate --model mypkg.models:make_net "
        "--weights net.pt --data heldout.npz --input-shape 1 28 28 --budget quick --out report",
    )
    evaluate.add_argument("--model", required=True, metavar="MODULE:FACTORY",
                          help="importable callable returning the trained torch module (or skorch net), "
                          "e.g. mypkg.models:make_net; a module-level nn.Module instance works too")
    evaluate.add_argument("--data", required=True, metavar="FILE.npz",
                          help=".npz with X (rows, or inputs of any shape) and y (labels): rows the model "
                          "was not trained on")
    evaluate.add_argument("--weights", metavar="FILE.pt", help="state dict loaded into the model "
                          "(torch.load(weights_only=True))")
    evaluate.add_argument("--eps", type=float, nargs="+", help="L-inf budgets of FGSM, PGD and AutoAttack, in "
                          "input units (default: 0.1 and 0.2 of the clip range)")
    evaluate.add_argument("--adaptive-eps", type=float, nargs="+",
                          help="AutoAttack's budgets (default: the largest --eps)")
    evaluate.add_argument("--detectors", nargs="+", metavar="NAME", choices=DEFAULT_DETECTORS,
                          help=f"detectors to fit (default: all that apply); MSP is always in. "
                          f"Choices: {' '.join(DEFAULT_DETECTORS)}")
    evaluate.add_argument("--clip-values", type=float, nargs=2, metavar=("LOW", "HIGH"), default=(0.0, 1.0),
                          help="range of valid inputs, the attacks' box (default: 0 1); X must lie in it")
    evaluate.add_argument("--no-clip", action="store_true", help="no box (clip_values=None)")
    evaluate.add_argument("--input-shape", type=int, nargs="+", metavar="N",
                          help="shape of one input as the model takes it, e.g. 1 28 28 (images are also "
                          "corrupted); default: the shape of X's rows in the .npz")
    evaluate.add_argument("--budget", default="quick", choices=tuple(BUDGETS),
                          help="how hard to attack (default: quick; see below)")
    evaluate.add_argument("--fpr", type=float, default=0.05, help="false-positive rate of every threshold, on "
                          "held-out clean rows (default: 0.05)")
    evaluate.add_argument("--seeds", type=int, default=1, help="repeats with seeds --seed, --seed + 1, ... "
                          "(default: 1)")
    evaluate.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    evaluate.add_argument("--out", default="skadv_evaluation",
                          help="folder for evaluation.csv, .md, .png and .html (default: skadv_evaluation)")
    evaluate.add_argument("--format", default="text", choices=FORMATS, help="table printed (default: text)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress (the table still prints)")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "demo":
        from ._demo import run_demo

        run_demo(out_dir=args.out, quick=args.quick, random_state=args.seed)
    elif args.command == "benchmark":
        from ._benchmark import run_benchmark

        run_benchmark(args.workload, quick=args.quick, out_dir=args.out, random_state=args.seed,
                      verbose=0 if args.quiet else 1, fmt=args.format)
    else:
        from ._evaluate import run_evaluate

        try:
            run_evaluate(args)
        except (ValueError, ImportError, OSError) as exc:
            print(f"python -m skadv evaluate: error: {exc}", file=sys.stderr)
            return 2
    return 0
