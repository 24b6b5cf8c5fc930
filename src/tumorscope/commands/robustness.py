"""``tumorscope robustness``: models under scanner and export artefacts, and on images that
are not MRI (experiments/robustness.py)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``robustness`` sub-command."""
    p = sub.add_parser("robustness", help="accuracy, Dice and OOD flags under artefacts; "
                       "flag rates on non-MRI probe images")
    p.add_argument("--checkpoint", type=Path, action="append", required=True,
                   help="a model folder (repeat to compare; the first one's test fold is used)")
    p.add_argument("--limit", type=int, default=300, help="held-out slices (evenly spread)")
    p.add_argument("--probes", type=int, default=20, help="generated images per probe kind")
    p.add_argument("--sources", nargs="+", metavar="DATASET",
                   help="datasets of a mixed collection to score (default: the model's own)")
    p.add_argument("--corruption", action="append", metavar="NAME",
                   help="score only this corruption (repeat; default: all of them)")
    p.add_argument("--data-root", help="dataset folder (default: the one in the model card)")
    p.add_argument("--out", type=Path, required=True, help="folder for robustness.json/.md")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run, write JSON and Markdown, print the Markdown."""
    from tumorscope.errors import ConfigError
    from tumorscope.experiments.robustness import NAMES, render_markdown, run_robustness
    from tumorscope.io.writers import write_json

    unknown = sorted(set(args.corruption or []) - set(NAMES))
    if unknown:
        raise ConfigError("--corruption", f"unknown corruption {unknown[0]!r} (known: "
                          f"{', '.join(NAMES)})")
    results = run_robustness(args.checkpoint, args.limit, args.probes, args.data_root,
                             sources=args.sources, corruptions=args.corruption)
    command = "tumorscope " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "robustness.json", [asdict(r) for r in results])
    text = render_markdown(results, args.limit, command)
    (args.out / "robustness.md").write_text(text, encoding="utf-8")
    print(text)
    print(json.dumps({"written": str(args.out)}))
    return 0
