"""``tumorscope embed``: a t-SNE map of a model's pooled features on part of its data split
(evaluation/embed.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``embed`` sub-command."""
    p = sub.add_parser("embed", help="t-SNE map of a model's features, by class and fold",
                       description="Maps the pooled features of a 2D slice model (joint or "
                       "classifier) on part of its patient split to 2D with t-SNE, reading the "
                       "slices with the model's own preprocessing. Writes embedding.csv (id, "
                       "patient, fold, part, class, x, y) and tsne.png (coloured by class, and "
                       "by split part, or by fold with --part all) to --out.")
    p.add_argument("--checkpoint", type=Path, required=True, help="model folder")
    p.add_argument("--out", type=Path, required=True, help="folder for embedding.csv, tsne.png")
    p.add_argument("--data-root", help="dataset folder (default: the one in the model card)")
    p.add_argument("--part", nargs="+", choices=("test", "val", "train", "all"), default=["test"],
                   help="part(s) of the split to embed (default: test; all: every fold, "
                   "coloured by fold)")
    p.add_argument("--fold", type=int,
                   help="fold taken as the test part (default: the model's test fold); the "
                   "part column still says what the model did with each slice (train, val, "
                   "test in its own split)")
    p.add_argument("--limit", type=int, help="at most this many slices (evenly spread)")
    p.add_argument("--seed", type=int, default=0, help="t-SNE random state")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Embed, write the CSV and PNG, print where they are."""
    from tumorscope.evaluation.embed import embed

    result = embed(args.checkpoint, args.out, args.data_root, args.part, args.fold, args.limit,
                   args.seed, args.batch_size)
    print(f"t-SNE of {result.slices} slices, coloured by class and by {result.coloured_by}")
    print(json.dumps({"csv": str(result.csv), "png": str(result.png)}))
    return 0
