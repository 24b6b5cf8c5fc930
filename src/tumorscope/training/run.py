"""``tumorscope train``: data, task module and Lightning Trainer from one config; resume a run;
export the selected weights when it finishes. The task (config ``task``) is looked up in the
task registry, so this file knows no concrete task."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch

from tumorscope.config import ExperimentConfig, dump_config, load_config
from tumorscope.data.prepare import prepare_split
from tumorscope.data.sampling import Loaders
from tumorscope.errors import ConfigError, TumorscopeError
from tumorscope.tasks.registry import get_task
from tumorscope.training.callbacks import CHECKPOINT_DIR, ResumableData, standard_callbacks
from tumorscope.training.export import export_checkpoint
from tumorscope.training.history import CSV_DIR, archive_metrics

log = logging.getLogger("tumorscope.train")
CONFIG_NAME = "config.yaml"


def _check_precision(cfg: ExperimentConfig) -> None:
    on_gpu = cfg.trainer.accelerator in ("gpu", "cuda") or (
        cfg.trainer.accelerator == "auto" and torch.cuda.is_available())
    if cfg.trainer.precision == "16-mixed" and not on_gpu:
        raise ConfigError("trainer.precision", "16-mixed needs a GPU; use bf16-mixed or 32 on CPU")


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest resumable Lightning checkpoint of a run (epoch-end or mid-epoch)."""
    found = [p for p in (run_dir / CHECKPOINT_DIR).glob("*.ckpt")
             if p.name.startswith(("last", "step"))]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def _resume_point(run_dir: Path, resume: bool) -> Path | None:
    if resume:
        ckpt_path = latest_checkpoint(run_dir)
        if ckpt_path is None:
            raise TumorscopeError(run_dir, "no checkpoint to resume from (checkpoints/last.ckpt "
                                  "or step.ckpt)")
        return ckpt_path
    if latest_checkpoint(run_dir) is not None:
        raise TumorscopeError(run_dir, "run already has checkpoints; pass --resume to continue "
                              "it or choose another output.run_name")
    return None


def _trainer(cfg: ExperimentConfig, loaders: Loaders,
             callbacks: Sequence[L.Callback]) -> L.Trainer:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    run_dir, t = cfg.run_dir, cfg.trainer
    return L.Trainer(
        default_root_dir=run_dir, max_epochs=t.epochs, precision=t.precision,
        accelerator=t.accelerator, devices=t.devices, strategy=t.strategy, num_nodes=t.num_nodes,
        limit_train_batches=t.limit_train_batches, limit_val_batches=t.limit_val_batches,
        gradient_clip_val=t.gradient_clip, accumulate_grad_batches=t.accumulate_grad_batches,
        deterministic=t.deterministic, log_every_n_steps=t.log_every_n_steps,
        callbacks=[*standard_callbacks(cfg, run_dir, loaders.val is not None, callbacks),
                   ResumableData(loaders.train, loaders.val)],
        use_distributed_sampler=False,  # EpochOrder shards by rank itself
        logger=[TensorBoardLogger(run_dir, name="tensorboard", version=""),
                CSVLogger(run_dir, name=CSV_DIR, version="")],
        num_sanity_val_steps=0, enable_model_summary=True,
    )


def train(cfg: ExperimentConfig, resume: bool = False, data_root: str | None = None,
          callbacks: Sequence[L.Callback] = ()) -> Path:
    """Train (or resume) the run ``cfg.run_dir``; returns the exported checkpoint directory.

    ``callbacks`` are added to the standard ones (checkpoints, early stopping, progress).
    """
    spec = get_task(cfg.task)
    _check_precision(cfg)
    run_dir = cfg.run_dir
    ckpt_path = _resume_point(run_dir, resume)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    index, split = prepare_split(cfg, data_root)
    loaders: Loaders = spec.load("data")(cfg, split)
    module = spec.load("module")(cfg.model_dump(mode="json"), index.classes, loaders.stats,
                                 load_pretrained=ckpt_path is None)
    run_dir.mkdir(parents=True, exist_ok=True)
    if ckpt_path is not None:
        archive_metrics(run_dir)
    (run_dir / CONFIG_NAME).write_text(dump_config(cfg), encoding="utf-8")
    trainer = _trainer(cfg, loaders, callbacks)
    trainer.fit(module, loaders.train, loaders.val, ckpt_path=ckpt_path, weights_only=False)
    if not trainer.is_global_zero:
        return run_dir / "model"
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    return export_checkpoint(cfg, Path(best) if best else None, index, split, loaders.stats)


def config_for_resume(run_dir: Path, overrides: list[str]) -> ExperimentConfig:
    """The config a run was started with, plus overrides (e.g. more epochs)."""
    path = run_dir / CONFIG_NAME
    if not path.is_file():
        raise TumorscopeError(run_dir, f"not a tumorscope run ({CONFIG_NAME} missing)")
    cfg = load_config(path, overrides)
    root = run_dir.parent
    return cfg.model_copy(update={"output": cfg.output.model_copy(
        update={"root": str(root), "run_name": run_dir.name})})
