"""``tumorscope augment``: a preview grid of augmented training samples with their masks."""

from __future__ import annotations

import argparse
from pathlib import Path

from tumorscope.errors import TumorscopeError
from tumorscope.locations import named_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``augment`` sub-command."""
    p = sub.add_parser("augment", help="preview augmentations (grid of samples with masks)")
    p.add_argument("--config", type=Path)
    p.add_argument("--model", help="a config by name, e.g. lgg/unet")
    p.add_argument("--preview", action="store_true", help="write the preview grid (default)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--samples", type=int, default=6)
    p.add_argument("--out", type=Path, default=Path("augmentation-preview.png"))
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write the preview grid for the config's augmentation settings."""
    from tumorscope.augment_preview import preview_grid
    from tumorscope.config import load_config

    config = args.config or (named_config(args.model) if args.model else None)
    if config is None:
        raise TumorscopeError("--config", "give an experiment YAML or --model NAME")
    out = preview_grid(load_config(config, args.overrides), args.out, args.samples)
    print(f"augmentation preview written to {out}")
    return 0
