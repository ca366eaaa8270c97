"""Command line: ``python -m skadv demo [--out DIR] [--quick]`` and
``python -m skadv benchmark [--workload NAME] [--quick] [--out DIR]``."""

import argparse
import sys

from ._benchmark import WORKLOADS


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m skadv", description="skadv command line")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="end-to-end run of every detector on load_digits")
    demo.add_argument("--out", default="skadv_demo", help="folder for the PNG figures (default: skadv_demo)")
    demo.add_argument("--quick", action="store_true", help="small settings (about a minute)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    benchmark = commands.add_parser("benchmark", help="the seven detectors on one workload: one table and a figure")
    benchmark.add_argument("--workload", default="digits-cnn", choices=WORKLOADS,
                           help="the classifier and data to protect (default: digits-cnn)")
    benchmark.add_argument("--quick", action="store_true",
                           help="smoke test: small settings (about a minute), numbers marked as not a benchmark")
    benchmark.add_argument("--out", default="skadv_benchmark",
                           help="folder for the CSV, markdown and PNG (default: skadv_benchmark)")
    benchmark.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    benchmark.add_argument("--quiet", action="store_true",
                           help="no progress lines (stage headers and the table still print)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        run_demo(out_dir=args.out, quick=args.quick, random_state=args.seed)
    elif args.command == "benchmark":
        from ._benchmark import run_benchmark

        run_benchmark(args.workload, quick=args.quick, out_dir=args.out, random_state=args.seed,
                      verbose=0 if args.quiet else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
