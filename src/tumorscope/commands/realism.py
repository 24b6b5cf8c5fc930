"""``tumorscope realism``: Fréchet distance of synthetic slices to held-out real ones in a
trained model's feature space, with a real-vs-real floor and perturbed-real baselines
(experiments/realism.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tumorscope.errors import TumorscopeError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``realism`` sub-command."""
    p = sub.add_parser("realism", help="how real synthetic slices look to a model: Fréchet "
                       "distance to held-out real slices in its feature space",
                       description="Reads the synthetic set (tumorscope synthesize output), the "
                       "config split's test fold (held-out patients; the synthetic set must "
                       "not touch them) and a subset of its training fold, each with the "
                       "model's own preprocessing, and compares their pooled features with the "
                       "held-out slices' (Fréchet distance, as in FID): synthetic (overall and "
                       "per class), real training slices (the floor a perfect generator would "
                       "reach) and blurred, noisy and pixel-shuffled real slices (for scale). "
                       "Writes realism.json and realism.png to --out.")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="model folder (a 2D slice model whose classes match the data)")
    p.add_argument("--synthetic", type=Path, required=True,
                   help="synthetic set folder (tumorscope synthesize --out)")
    p.add_argument("--config", "--hparams", dest="config", type=Path, required=True,
                   help="experiment YAML whose data section and split give the real slices")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. data.root=/data/figshare")
    p.add_argument("--data-root", help="dataset folder (overrides data.root)")
    p.add_argument("--out", type=Path, required=True, help="folder for realism.json and "
                   "realism.png")
    p.add_argument("--limit", type=int, default=1000, help="at most this many slices per set, "
                   "evenly spread (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise and pixel shuffles")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check the inputs, compare the feature sets, write and summarise the report."""
    from tumorscope.config import load_config
    from tumorscope.experiments.realism import realism

    if args.batch_size < 1:
        raise TumorscopeError("--batch-size", f"{args.batch_size} is not a positive number")
    if args.out.exists() and not args.out.is_dir():
        raise TumorscopeError(args.out, "exists and is not a folder (--out)")
    cfg = load_config(args.config, args.overrides)
    report = realism(args.checkpoint, args.synthetic, cfg, args.out, args.data_root, args.limit,
                     args.seed, args.batch_size, args.device)
    fd, n = report["frechet_vs_held_out"], report["slices"]
    print(f"Fréchet distance to {n['held_out']} held-out real slices: synthetic "
          f"{fd['synthetic']:.4g} ({n['synthetic']} slices), real training floor "
          f"{fd['real_train']:.4g}, pixel-shuffled real {fd['shuffled']:.4g}")
    print(json.dumps({"json": str(args.out / "realism.json"),
                      "png": str(args.out / "realism.png")}))
    return 0
