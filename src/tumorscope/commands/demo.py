"""``tumorscope demo``: predict held-out real scans with the default model."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    p = sub.add_parser("demo", help="the shipped models on bundled held-out example scans",
                       description="Every shipped model predicts the example slices bundled "
                       "with tumorscope (patients of its held-out test fold): masks, overlays "
                       "and JSON with the true class and the Dice against the true mask.")
    p.add_argument("--out", type=Path, default=Path("demo-output"))
    p.add_argument("--checkpoint", type=Path, help="one model instead of the shipped ones")
    p.add_argument("--data", type=Path, nargs="?", const="", metavar="DIR",
                   help="held-out slices of the real figshare data in DIR instead (default "
                   "DIR: $TUMORSCOPE_DATA or ../shared/data)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Predict the demo scans and print predictions beside the true classes."""
    from rich.console import Console
    from rich.table import Table

    from tumorscope.demo import data_root, run_demo

    data = None if args.data is None else (Path(args.data) if str(args.data) else data_root())
    records = run_demo(args.out, args.checkpoint, data)
    models = ", ".join(sorted({r["model_id"] for r in records}))
    table = Table(title=f"held-out scans (patients never seen in training); {models}")
    for col in ["file", "true class", "predicted", "probability", "tumour size", "Dice"]:
        table.add_column(col)
    for r in records:
        if "case" in r:  # a BraTS case: region volumes and Dice per region
            table.add_row(r["case"], "glioma (regions)", "WT/TC/ET", "",
                          " / ".join(f"{r['volumes_cm3'][k]:.0f}" for k in r["dice"]) + " cm³",
                          " / ".join(f"{v:.3f}" for v in r["dice"].values()))
            continue
        outlined = r["dice"] is not None  # a classifier draws no outline
        table.add_row(Path(r["file"]).name, r["true_class"], r["class"],
                      f"{r['probabilities'][r['class']]:.3f}",
                      str(r["tumour_area_pixels"]) if outlined else "-",
                      f"{r['dice']:.3f}" if outlined else "-")
    Console().print(table)
    print(f"overlays, masks and JSON in {args.out}/")
    return 0
