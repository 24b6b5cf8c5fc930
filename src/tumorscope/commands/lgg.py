"""``tumorscope lgg``: the LGG segmentation project's ``main.py`` flags, accepted verbatim.

``--root_dir`` is the *dataset* folder (as in the original); runs are written under
``--out`` (default ``runs/``), never inside the dataset. ``--gpus N`` is the index of the GPU
to use; without a GPU the run falls back to the CPU with a one-line note. ``--lr_scheduler``
switches reduce-on-plateau on (off without it). Every flag also has its hyphenated form.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tumorscope.errors import TumorscopeError
from tumorscope.locations import named_config

log = logging.getLogger("tumorscope.lgg")
MODELS = {"unet": "lgg/unet", "resnext": "lgg/unet-resnext50"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``lgg`` sub-command."""
    p = sub.add_parser("lgg", help="LGG FLAIR segmentation with the original main.py flags",
                       description="The LGG project's flags: --train, --test, --view_aug, "
                       "--image_path, --model unet|resnext, --root_dir DATASET, --num_epochs, "
                       "--batch_size, --lr_scheduler, --gpus INDEX, --run_name.")
    p.add_argument("--train", action="store_true", help="train the model")
    p.add_argument("--test", action="store_true",
                   help="evaluate the run's model on the held-out test fold")
    p.add_argument("--view_aug", "--view-aug", action="store_true",
                   help="write a grid of training samples and their augmentations")
    p.add_argument("--image_path", "--image-path", type=Path, action="append", default=[],
                   help="predict this image with the run's model (may repeat)")
    p.add_argument("--model", choices=sorted(MODELS), default="unet",
                   help="unet (plain UNet) or resnext (UNet with a ResNeXt50 encoder)")
    p.add_argument("--root_dir", "--root-dir", type=Path,
                   help="the dataset folder (kaggle_3m or its parent; default: the config's)")
    p.add_argument("--num_epochs", "--num-epochs", type=int, help="training epochs")
    p.add_argument("--batch_size", "--batch-size", type=int, help="batch size")
    p.add_argument("--lr_scheduler", "--lr-scheduler", action="store_true",
                   help="reduce the learning rate on plateau (off without this flag)")
    p.add_argument("--gpus", type=int, metavar="INDEX", help="index of the GPU to train on")
    p.add_argument("--run_name", "--run-name", help="name of the run folder")
    p.add_argument("--out", type=Path, default=Path("runs"),
                   help="where run folders are written (default: runs)")
    p.set_defaults(handler=run)


def _device_overrides(gpus: int | None) -> list[str]:
    """``--gpus N`` -> that GPU; no GPU on this machine: the CPU, with a one-line note."""
    if gpus is None:
        return []
    import torch

    if gpus < 0:
        raise TumorscopeError("--gpus", f"a GPU index is 0 or more, got {gpus}")
    available = torch.cuda.device_count()
    if gpus >= available:
        print(f"note: no GPU {gpus} on this machine ({available} found); training on the CPU")
        return ["trainer.accelerator=cpu", "trainer.devices=1"]
    return ["trainer.accelerator=gpu", f"trainer.devices=[{gpus}]"]


def overrides(args: argparse.Namespace) -> list[str]:
    """Config overrides for the original flags."""
    out = [f"output.root={args.out}",
           f"scheduler.name={'plateau' if args.lr_scheduler else 'none'}"]
    for value, key in ((args.root_dir, "data.root"), (args.num_epochs, "trainer.epochs"),
                       (args.batch_size, "trainer.batch_size"),
                       (args.run_name, "output.run_name")):
        if value is not None:
            out.append(f"{key}={value}")
    return out + _device_overrides(args.gpus)


def run(args: argparse.Namespace) -> int:
    """Do what the flags ask, in the original's order: view augmentations, train, test,
    predict."""
    from tumorscope.config import load_config

    if not (args.train or args.test or args.view_aug or args.image_path):
        raise TumorscopeError("lgg", "nothing to do: give --train, --test, --view_aug or "
                              "--image_path")
    from tumorscope.training.run import check_output

    cfg = load_config(named_config(MODELS[args.model]), overrides(args))
    check_output(cfg)  # before anything is written: never into the dataset
    model = cfg.run_dir / "model"
    if args.view_aug:
        from tumorscope.augment_preview import preview_grid

        grid = preview_grid(cfg, cfg.run_dir / "augmentations.png")
        print(f"augmentation preview written to {grid}")
    if args.train:
        from tumorscope.training.run import latest_checkpoint, train

        model = train(cfg, resume=latest_checkpoint(cfg.run_dir) is not None)
        print(f"model written to {model}")
    if (args.test or args.image_path) and not (model / "model.json").is_file():
        raise TumorscopeError(model, "no trained model in this run; add --train")
    if args.test:
        from tumorscope.evaluation.evaluate import evaluate

        result = evaluate(model, cfg.data.test_fold, cfg.run_dir / "eval-test")
        volumes = result.volumes
        if volumes is not None:
            low, high = volumes.dice_ci
            print(f"per-patient volume Dice {volumes.dice_mean_per_patient:.3f} "
                  f"(95% CI {low:.3f}-{high:.3f}) over {volumes.patients} held-out patients")
        print(f"test-fold report: {cfg.run_dir / 'eval-test' / 'report.html'}")
    if args.image_path:
        from tumorscope.inference.outputs import predict_files
        from tumorscope.inference.predictor import Predictor

        records = predict_files(Predictor.from_checkpoint(model), args.image_path,
                                cfg.run_dir / "predictions")
        from tumorscope.commands.predict import tumour_size

        for record in records:
            print(f"{record['file']}: {record['class']}, tumour {tumour_size(record)[0]} -> "
                  f"{record['outputs']['overlay']}")
    return 0
