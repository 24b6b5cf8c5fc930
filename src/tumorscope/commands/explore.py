"""``tumorscope explore``: class and tumour/no-tumour distributions, per-patient counts and a
sample grid of a dataset, before training (the LGG project's data-exploration step)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``explore`` sub-command."""
    p = sub.add_parser("explore", help="distributions, per-patient counts and sample images "
                       "of a dataset")
    p.add_argument("--dataset", default="lgg", help="a registered dataset (lgg, figshare, "
                   "figshare-mat, imagefolder)")
    p.add_argument("--root", "--root_dir", "--root-dir", dest="root", type=Path,
                   help="the dataset folder (default: $TUMORSCOPE_DATA/<dataset>)")
    p.add_argument("--folds", type=int, default=5, help="patient-level folds to report")
    p.add_argument("--seed", type=int, default=42, help="seed of computed folds")
    p.add_argument("--samples", type=int, default=16, help="slices in the sample grid")
    p.add_argument("--out", type=Path, default=Path("exploration"))
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write summary.json, distributions.png and samples.png; print the headline counts."""
    from tumorscope.demo import data_root
    from tumorscope.explore import explore

    root = args.root or data_root() / args.dataset.split("-")[0]
    s = explore(args.dataset, root, args.out, args.folds, args.seed, args.samples)
    spp = s["slices_per_patient"]
    print(f"{s['dataset']}: {s['slices']} slices, {s['patients']} patients "
          f"({spp['min']}-{spp['max']} slices each); classes {s['classes']}; "
          f"{s['tumour_slices']} slices with tumour, {s['no_tumour_slices']} without")
    print(f"summary, distributions.png and samples.png written to {args.out}/")
    return 0
