"""``tumorscope synthesize``: train pix2pix on a config's training fold, then draw a synthetic
labelled dataset from it (synthesis/pix2pix.py, synthesis/generate.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tumorscope.errors import TumorscopeError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``synthesize`` sub-command."""
    p = sub.add_parser("synthesize", help="train a pix2pix GAN on a config's training fold and "
                       "draw synthetic labelled slices (a 'synthetic' dataset)",
                       description="Trains a conditional GAN (pix2pix: U-Net generator, "
                       "PatchGAN discriminator, least-squares + L1) on the training fold of "
                       "the experiment's patient split only, into OUT/generator (resumable), "
                       "then draws N slices, classes in turn, each conditioned on a real "
                       "training slice's head outline and tumour mask. OUT is then a dataset: "
                       "data.dataset=synthetic, data.root=OUT. Validation and test patients "
                       "never reach the generator (checked after writing).")
    p.add_argument("--config", "--hparams", dest="config", type=Path, required=True,
                   help="experiment YAML whose data section and split to use")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. data.root=/data/figshare")
    p.add_argument("--data-root", help="dataset folder (overrides data.root)")
    p.add_argument("--out", type=Path, required=True, help="folder for the synthetic dataset "
                   "(the generator goes to OUT/generator)")
    p.add_argument("--n", type=int, default=7000, help="synthetic slices to draw (default 7000)")
    p.add_argument("--train-steps", type=int, default=5000,
                   help="generator training steps (default 5000)")
    p.add_argument("--size", type=int, default=128, help="slice size in pixels, a multiple of "
                   "16 (default 128)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--l1-weight", type=float, default=100.0, help="weight of the L1 term "
                   "(default 100, as in pix2pix)")
    p.add_argument("--width", type=int, default=32, help="channels of the first generator "
                   "layer (default 32)")
    p.add_argument("--save-every", type=int, default=500, help="save the training state every "
                   "N steps (default 500)")
    p.add_argument("--seed", type=int, help="default: the config's seed")
    p.add_argument("--no-jitter", action="store_true", help="condition on the real masks as "
                   "they are (default: random mirror and small tumour shift)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--resume", action="store_true", help="continue the training state in "
                   "OUT/generator")
    p.set_defaults(handler=run)


def check_args(args: argparse.Namespace) -> None:
    """One-line errors for numbers out of range, before any data is read."""
    from tumorscope.synthesis.pix2pix import check_size

    for flag in ("n", "train_steps", "batch_size", "width", "save_every"):
        if getattr(args, flag) < 1:
            raise TumorscopeError(f"--{flag.replace('_', '-')}",
                                  f"{getattr(args, flag)} is not a positive number")
    if args.lr <= 0 or args.l1_weight < 0:
        raise TumorscopeError("--lr/--l1-weight", "the learning rate must be positive and the "
                              "L1 weight not negative")
    try:
        check_size(args.size)
    except TumorscopeError as err:
        raise TumorscopeError("--size", err.problem) from None
    if args.out.exists() and not args.out.is_dir():
        raise TumorscopeError(args.out, "exists and is not a folder (--out)")


def run(args: argparse.Namespace) -> int:
    """Split, train the generator on the training fold, draw, check for leakage, report."""
    check_args(args)
    from tumorscope.config import load_config
    from tumorscope.data.prepare import prepare_split
    from tumorscope.synthesis.generate import check_no_leak, refuse_existing, synthesize
    from tumorscope.synthesis.pix2pix import train_pix2pix

    refuse_existing(args.out)  # before training, not after
    cfg = load_config(args.config, args.overrides)
    index, split = prepare_split(cfg, args.data_root)
    seed = cfg.seed if args.seed is None else args.seed
    generator = train_pix2pix(split.train, args.out / "generator", index.classes, args.size,
                              args.train_steps, args.batch_size, seed, args.lr,
                              args.l1_weight, args.width, args.save_every,
                              resume=args.resume, device=args.device)
    out = synthesize(generator, split.train, args.n, args.out, seed,
                     jittered=not args.no_jitter, device=args.device)
    check_no_leak(out / "manifest.csv", {r.patient for r in split.val + split.test})
    patients = len({r.patient for r in split.train})
    print(f"pix2pix trained {args.train_steps} steps on {len(split.train)} training slices of "
          f"{patients} patients ({generator})")
    print(f"{args.n} synthetic slices written to {out}/ (no validation or test patient used); "
          f"train on them with data.dataset=synthetic data.root={out}")
    return 0
