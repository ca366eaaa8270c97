"""Command line: ``python -m skadv [--version] {demo,benchmark,evaluate} ...``.

Application code on top of the library: every command runs the public
:func:`skadv.evaluation.evaluate` protocol and prints its table; progress (a
line per stage, tqdm bars) goes to stderr, tables to stdout.
"""

from ._main import main

__all__ = ["main"]
