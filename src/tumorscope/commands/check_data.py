"""``tumorscope check-data``: near-duplicate images within and across folds and datasets, and
label conflicts, written as pairs.csv, summary.json, report.md and examples.png."""

from __future__ import annotations

import argparse
from pathlib import Path

from tumorscope.errors import TumorscopeError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``check-data`` sub-command."""
    p = sub.add_parser("check-data", help="audit datasets for near-duplicate images (across "
                       "folds, patients, datasets; mirrored too) and label conflicts")
    p.add_argument("--data", action="append", required=True, metavar="NAME=ROOT",
                   help="a registered dataset and its folder, e.g. figshare=data/figshare; "
                   "repeat to audit several together (cross-dataset pairs)")
    p.add_argument("--out", type=Path, required=True, help="folder for the report (written "
                   "complete or not at all)")
    p.add_argument("--threshold", type=float, default=0.95, help="correlation of the 32x32 "
                   "fingerprints from which two images are near-duplicates (default 0.95)")
    p.add_argument("--limit", type=int, help="audit only the first N images of each dataset")
    p.set_defaults(handler=run)


def parse_data(values: list[str]) -> list[tuple[str, Path]]:
    """``NAME=ROOT`` flags as (registered name, existing folder); one-line errors."""
    from tumorscope.data import dataset_names

    known = dataset_names()
    parsed: list[tuple[str, Path]] = []
    for value in values:
        name, sep, root = value.partition("=")
        name = name.strip()
        if not sep or not name or not root:
            raise TumorscopeError("--data", f"{value!r} is not NAME=ROOT (e.g. "
                                  "figshare=data/figshare)")
        if name not in known:
            raise TumorscopeError("--data", f"unknown dataset {name!r}; known: "
                                  f"{', '.join(known)}")
        if any(name == seen for seen, _ in parsed):
            raise TumorscopeError("--data", f"dataset {name!r} is given twice")
        if not Path(root).is_dir():
            raise TumorscopeError(root, f"dataset folder not found (--data {value})")
        parsed.append((name, Path(root)))
    return parsed


def run(args: argparse.Namespace) -> int:
    """Index the datasets, audit them, write the report folder, print the headline."""
    if not 0 < args.threshold <= 1:
        raise TumorscopeError("--threshold", f"{args.threshold} is not in (0, 1]")
    if args.limit is not None and args.limit < 1:
        raise TumorscopeError("--limit", f"{args.limit} is not a positive number of images")
    if args.out.exists() and not args.out.is_dir():
        raise TumorscopeError(args.out, "exists and is not a folder (--out)")
    datasets = parse_data(args.data)

    from tumorscope.data import load_index
    from tumorscope.data.audit import audit, write_audit
    from tumorscope.io.writers import atomic_folder

    found = audit([load_index(name, root) for name, root in datasets], args.threshold,
                  args.limit)
    command = " ".join(["tumorscope check-data", *(f"--data {v}" for v in args.data),
                        f"--out {args.out}", f"--threshold {args.threshold}",
                        *([f"--limit {args.limit}"] if args.limit else [])])
    with atomic_folder(args.out) as folder:
        summary = write_audit(found, folder, command)
    counts = ", ".join(f"{n} {kind}" for kind, n in summary["by_kind"].items())
    print(f"{summary['images']} images, {summary['pairs']} near-duplicate pairs at r >= "
          f"{args.threshold}: {counts}")
    print(f"pairs.csv, summary.json, report.md and examples.png written to {args.out}/")
    return 0
