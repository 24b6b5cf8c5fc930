"""``tumorscope prepare``: build a BraTS experiment's training cache once (resumable)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``prepare`` sub-command."""
    p = sub.add_parser("prepare", help="preprocess a BraTS experiment's cases into its HDF5 "
                       "training cache (resumable; training reuses it)")
    p.add_argument("--config", "--hparams", type=Path, required=True,
                   help="a BraTS experiment YAML (configs/brats/...)")
    p.add_argument("--data-root", help="dataset folder (overrides data.root)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Index and split by case, then preprocess the training and validation cases."""
    from tumorscope.config import BratsExperiment, load_config, require_task
    from tumorscope.data.brats import build_cache
    from tumorscope.data.prepare import prepare_split

    cfg = require_task(load_config(args.config, args.overrides), BratsExperiment)
    index, split = prepare_split(cfg, args.data_root)
    cases = [*split.train, *split.val]
    folder = build_cache(cfg, cases)
    print(f"{len(cases)} cases ({len(split.train)} training, {len(split.val)} validation; "
          f"{len(split.test)} held out, not cached) in {folder}/")
    unlabelled = index.info.get("unlabelled")
    if isinstance(unlabelled, list) and unlabelled:
        print(f"left out, no segmentation: {', '.join(str(c) for c in unlabelled)}")
    return 0
