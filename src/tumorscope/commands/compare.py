"""``tumorscope compare``: models evaluated on the same fold, side by side, with paired
patient-bootstrap differences -> Markdown + chart."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``compare`` sub-command."""
    p = sub.add_parser("compare", help="models evaluated on the same fold, side by side, with "
                       "paired patient-bootstrap differences -> Markdown + chart")
    p.add_argument("metrics", nargs="+", type=Path,
                   help="metrics.json files (or evaluation folders) from tumorscope evaluate")
    p.add_argument("--names", nargs="+", help="a column name per file (default: model ids)")
    p.add_argument("--title", help="heading of the Markdown file")
    p.add_argument("--out", type=Path, default=Path("comparison.md"))
    p.set_defaults(handler=run)


def reproduce_command(args: argparse.Namespace) -> str:
    """The shell command that reproduces this comparison (recorded in the document)."""
    words = ["tumorscope", "compare", *map(str, args.metrics)]
    words += ["--names", *args.names] if args.names else []
    words += ["--title", args.title] if args.title else []
    return shlex.join([*words, "--out", str(args.out)])


def run(args: argparse.Namespace) -> int:
    """Write the comparison Markdown and its chart."""
    from tumorscope.evaluation.compare import write_comparison

    out = write_comparison(args.metrics, args.out, args.names, args.title,
                           reproduce_command(args))
    print(f"comparison written to {out} (chart: {out.with_suffix('.png')})")
    return 0
