"""``tumorscope info``: a model's card as JSON (without the long training config)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tumorscope.locations import default_checkpoint


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``info`` sub-command."""
    p = sub.add_parser("info", help="show a model card")
    p.add_argument("--checkpoint", type=Path)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the card summary."""
    from tumorscope.checkpoint.store import read_card

    card = read_card(args.checkpoint or default_checkpoint())
    print(json.dumps(card.summary(), indent=2))
    return 0
