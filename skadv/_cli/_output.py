"""Printing a report in the format asked for, and stage headers."""

import csv
import sys


def section(title):
    """A stage header on stdout, printed when the stage starts."""
    print(f"\n== {title} " + "=" * max(0, 66 - len(title)), flush=True)


def print_report(report, fmt="text", width=100):
    """The report's table on stdout: ``text`` (headline rates, fits ``width``), ``markdown`` or ``csv``."""
    if fmt == "markdown":
        print(report.to_markdown())
        print()
        print(report.legend(width=width))
    elif fmt == "csv":
        columns = list(dict.fromkeys(c for r in report.records for c in r))
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(report.records)
    else:
        print(report.to_text(width=width))
        print()
        print(report.to_attack_text(width=width))
        print()
        print(report.legend(width=width, marks="+ / -"))
    sys.stdout.flush()
