"""``tumorscope train``: train (or resume) a model from a YAML experiment config."""

from __future__ import annotations

import argparse
from pathlib import Path

from tumorscope.errors import TumorscopeError
from tumorscope.locations import named_config

# flag (argparse dest) -> config key it overrides
FLAG_KEYS = (("run_name", "output.run_name"), ("epochs", "trainer.epochs"),
             ("batch_size", "trainer.batch_size"), ("devices", "trainer.devices"),
             ("strategy", "trainer.strategy"), ("num_nodes", "trainer.num_nodes"),
             ("lr_scheduler", "scheduler.name"), ("root_dir", "output.root"))


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    p = sub.add_parser("train", help="train a model from a YAML config",
                       description="Train from a YAML experiment config. Any key can be "
                       "overridden as key.sub=value (e.g. trainer.epochs=3 model.input_size=128).")
    p.add_argument("--config", "--hparams", dest="config", type=Path,
                   help="experiment YAML (configs/...)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue an interrupted run from its last checkpoint")
    p.add_argument("--data-root", help="dataset folder (overrides data.root)")
    p.add_argument("--run-name", help="output.run_name")
    p.add_argument("--epochs", type=int, help="trainer.epochs")
    p.add_argument("--batch-size", type=int, help="trainer.batch_size")
    p.add_argument("--devices", help="trainer.devices (GPUs or CPU processes)")
    p.add_argument("--strategy", help="trainer.strategy (auto, ddp, ...)")
    p.add_argument("--num-nodes", type=int, help="trainer.num_nodes")
    p.add_argument("--gpus", dest="devices", help=argparse.SUPPRESS)  # the original flag name
    p.add_argument("--lr-scheduler", choices=["cosine", "plateau", "none"],
                   help="scheduler.name")
    p.add_argument("--root-dir", help="output.root (where runs are written)")
    p.add_argument("--model", help="a config by name, e.g. lgg/unet or lgg/unet-resnext50 "
                   "(instead of --config)")
    p.add_argument("--test", action="store_true",
                   help="after training, evaluate on the held-out test fold")
    p.set_defaults(handler=run)


def overrides_from_flags(args: argparse.Namespace) -> list[str]:
    """The positional ``key=value`` overrides plus one for every config flag given."""
    overrides = list(args.overrides)
    for flag, key in FLAG_KEYS:
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    return overrides


def run(args: argparse.Namespace) -> int:
    """Train; with ``--test`` also evaluate on the held-out test fold."""
    from tumorscope.config import load_config
    from tumorscope.experiments.pretrain import pretrained_start
    from tumorscope.training.run import config_for_resume, train

    overrides = overrides_from_flags(args)
    config: Path | None = args.config
    if args.model is not None:
        if config is not None:
            raise TumorscopeError("--model", "give either --model or --config, not both")
        config = named_config(args.model)
    if args.resume is not None:
        cfg = config_for_resume(args.resume, overrides)
    else:
        if config is None:
            raise TumorscopeError("--config", "give an experiment YAML (see configs/), "
                                  "--model NAME or --resume")
        cfg = load_config(config, overrides)
        cfg = pretrained_start(cfg, args.data_root)  # a pretrain section: synthetic slices first
    out = train(cfg, resume=args.resume is not None, data_root=args.data_root)
    print(f"model written to {out}")
    if args.test:
        from tumorscope.evaluation.evaluate import evaluate

        evaluate(out, cfg.data.test_fold, cfg.run_dir / "eval-test", args.data_root)
        print(f"test-fold report: {cfg.run_dir / 'eval-test' / 'report.html'}")
    return 0
