"""``tumorscope demo``: predict held-out real scans with the default model."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    p = sub.add_parser("demo", help="predict held-out real scans with the default model")
    p.add_argument("--out", type=Path, default=Path("demo-output"))
    p.add_argument("--checkpoint", type=Path)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Predict the demo scans and print predictions beside the true classes."""
    from rich.console import Console
    from rich.table import Table

    from tumorscope.demo import run_demo

    records = run_demo(args.out, args.checkpoint)
    table = Table(title="held-out scans (patients never seen in training)")
    for col in ["file", "true class", "predicted", "probability", "tumour area px"]:
        table.add_column(col)
    for r in records:
        table.add_row(Path(r["file"]).name, r["true_class"], r["class"],
                      f"{r['probabilities'][r['class']]:.3f}", str(r["tumour_area_pixels"]))
    Console().print(table)
    print(f"overlays, masks and JSON in {args.out}/")
    return 0
