"""Command line: ``python -m skadv demo [--out DIR] [--quick]``."""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m skadv", description="skadv command line")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="end-to-end run of every detector on load_digits")
    demo.add_argument("--out", default="skadv_demo", help="folder for the PNG figures (default: skadv_demo)")
    demo.add_argument("--quick", action="store_true", help="small settings (about a minute)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        run_demo(out_dir=args.out, quick=args.quick, random_state=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
