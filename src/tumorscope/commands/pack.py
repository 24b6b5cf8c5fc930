"""``tumorscope pack``: a 2D run's training and validation slices in one compact folder, to
train where the raw dataset is not (``data.pack``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``pack`` sub-command."""
    p = sub.add_parser("pack", help="read a 2D experiment's training and validation slices "
                       "once, at the model's input size, into a compact folder that a machine "
                       "without the dataset trains from (data.pack=FOLDER); held-out slices "
                       "never enter it")
    p.add_argument("--config", "--hparams", type=Path, required=True,
                   help="a 2D experiment YAML (joint or classify)")
    p.add_argument("--out", type=Path, required=True, help="the pack folder to create")
    p.add_argument("--parts", type=int, default=1,
                   help="split the pixels into this many files (for size-limited transfers)")
    p.add_argument("--data-root", help="dataset folder (overrides data.root)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Index and split by patient, check a warm start, then write the pack."""
    from tumorscope.config import ClassifyExperiment, JointExperiment, load_config
    from tumorscope.data.pack import write_pack
    from tumorscope.data.prepare import prepare_split
    from tumorscope.errors import ConfigError
    from tumorscope.training.run import check_warm_start

    if args.parts < 1:
        raise ConfigError("--parts", "must be at least 1")
    if args.out.exists():  # before the dataset is read
        raise ConfigError(args.out, "already exists; choose a new folder for the pack")
    # as the run that trains from it: the config refuses what a pack cannot serve (BraTS
    # volumes, progressive resizing, pix2pix pre-training)
    cfg = load_config(args.config, [*args.overrides, f"data.pack={args.out}"])
    if not isinstance(cfg, JointExperiment | ClassifyExperiment):  # a task added by a plugin
        raise ConfigError(args.config, f"packs hold the 2D slices of joint and classify "
                          f"experiments, not {cfg.task!r} ones")
    index, split = prepare_split(cfg, args.data_root)
    check_warm_start(cfg, split)  # where the data is: a machine without it cannot check
    out = write_pack(cfg, index, split, args.out, args.parts)
    files = sorted(out.iterdir())
    size = sum(f.stat().st_size for f in files) / 1e6
    print(f"{len(split.train)} training and {len(split.val)} validation slices of "
          f"{index.name} at {cfg.model.input_size} px in {out}/ ({len(files)} files, "
          f"{size:.1f} MB); {len(split.test)} held-out slices listed, not packed. Train with "
          f"data.pack={out}")
    return 0
