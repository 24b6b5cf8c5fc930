"""``tumorscope results``: the baseline and ablation suite -> ``docs/results.md``."""

from __future__ import annotations

import argparse
from pathlib import Path

from tumorscope.locations import MODELS


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``results`` sub-command."""
    p = sub.add_parser("results", help="baseline + ablations -> docs/results.md (long: trains)")
    p.add_argument("--config", type=Path, default=Path("configs/figshare/joint-lite0.yaml"))
    p.add_argument("--checkpoint", type=Path, default=MODELS / "figshare",
                   help="the full-budget model of the suite's recipe, evaluated on figshare "
                   "(default: the shipped figshare-only model, models/figshare)")
    p.add_argument("--runs", type=Path, default=Path("runs/results"))
    p.add_argument("--out", type=Path, default=Path("docs/results.md"))
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Train and evaluate the suite (cached runs are reused), then write the document."""
    from tumorscope.experiments.results import run_suite, write_results

    model = args.checkpoint
    numbers = run_suite(args.config, model, args.runs)
    print(f"results written to {write_results(numbers, args.out, model)}")
    return 0
