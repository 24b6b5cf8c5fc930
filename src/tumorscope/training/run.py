"""``tumorscope train``: build data, model and Lightning Trainer from one config; resume a run;
export the selected weights as a shareable safetensors checkpoint with its model card."""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch

from tumorscope.data import load_index
from tumorscope.data.dataset import SliceDataset, dataset_stats
from tumorscope.data.sampling import EpochOrder, ResumableData, ResumableLoader
from tumorscope.data.splits import Split, make_split
from tumorscope.errors import ConfigError, TumorscopeError
from tumorscope.training.config import ExperimentConfig, dump_config, load_config, resolve_data_root
from tumorscope.training.history import CSV_DIR, archive_metrics, read_run_metrics

log = logging.getLogger("tumorscope.train")
CONFIG_NAME = "config.yaml"


def prepare_split(cfg: ExperimentConfig, data_root: str | None = None) -> tuple[Any, Split]:
    """Index the dataset and split it by patient as the config says."""
    root = resolve_data_root(cfg, data_root)
    if not root.exists():
        raise ConfigError("data.root", f"dataset folder {root} not found (set data.root or "
                          "TUMORSCOPE_DATA)")
    index = load_index(cfg.data.dataset, root)
    split = make_split(index, cfg.data.folds, cfg.data.test_fold, cfg.data.val_fold, cfg.seed,
                       cfg.data.fold_source)
    if cfg.data.limit_per_split:
        n = cfg.data.limit_per_split
        split = Split(_spread(split.train, n), _spread(split.val, n), _spread(split.test, n),
                      split.test_fold, split.val_fold)
    if not split.train:
        raise ConfigError("data", "the split leaves no training slices")
    return index, split


def _spread(records: list[Any], n: int) -> list[Any]:
    """An evenly spaced subset (keeps classes and patients mixed for quick demos)."""
    if len(records) <= n:
        return records
    step = len(records) / n
    return [records[int(i * step)] for i in range(n)]


def _loaders(cfg: ExperimentConfig, split: Split, stats: tuple[float, float] | None,
             train_ds: SliceDataset) -> tuple[ResumableLoader, ResumableLoader | None]:
    m = cfg.model
    kw: dict[str, Any] = {"batch_size": cfg.trainer.batch_size, "num_workers": cfg.data.num_workers,
                          "persistent_workers": cfg.data.num_workers > 0}
    train = ResumableLoader(train_ds, EpochOrder(len(train_ds), cfg.seed),
                            drop_last=len(train_ds) > cfg.trainer.batch_size, **kw)
    if not split.val:
        return train, None
    val_ds = SliceDataset(split.val, m.in_channels, m.input_size, m.normalization, stats,
                          cache=cfg.data.cache)
    return train, ResumableLoader(val_ds, EpochOrder(len(val_ds), cfg.seed, shuffle=False,
                                                     pad=False), **kw)


def _callbacks(cfg: ExperimentConfig, run_dir: Path, has_val: bool) -> list[L.Callback]:
    from lightning.pytorch.callbacks import (
        EarlyStopping,
        LearningRateMonitor,
        ModelCheckpoint,
        RichProgressBar,
        TQDMProgressBar,
    )

    ckpt_dir = run_dir / "checkpoints"
    es = cfg.early_stopping
    callbacks: list[L.Callback] = [
        ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=es.monitor if has_val else None,
                        mode=es.mode, save_top_k=1, save_last=True),
        ModelCheckpoint(dirpath=ckpt_dir, filename="step", save_top_k=1,
                        every_n_train_steps=cfg.trainer.checkpoint_every_n_steps),
        LearningRateMonitor(logging_interval="epoch"),
        EpochSummary(),
        RichProgressBar() if sys.stdout.isatty() else TQDMProgressBar(refresh_rate=10),
    ]
    if es.enabled and has_val:
        callbacks.append(EarlyStopping(monitor=es.monitor, mode=es.mode, patience=es.patience))
    return callbacks


class EpochSummary(L.Callback):
    """One plain log line per epoch, readable in a log file (progress bars are not)."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        shown = {k: float(v) for k, v in trainer.callback_metrics.items()
                 if k.startswith(("val/", "train/loss"))}
        text = "  ".join(f"{k}={v:.4f}" for k, v in sorted(shown.items()))
        print(f"[epoch {trainer.current_epoch}] step={trainer.global_step}  {text}", flush=True)


def _check_precision(cfg: ExperimentConfig) -> None:
    on_gpu = cfg.trainer.accelerator in ("gpu", "cuda") or (
        cfg.trainer.accelerator == "auto" and torch.cuda.is_available())
    if cfg.trainer.precision == "16-mixed" and not on_gpu:
        raise ConfigError("trainer.precision", "16-mixed needs a GPU; use bf16-mixed or 32 on CPU")


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest resumable Lightning checkpoint of a run (epoch-end or mid-epoch)."""
    found = [p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.name.startswith(("last",
                                                                                      "step"))]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def train(cfg: ExperimentConfig, resume: bool = False, data_root: str | None = None) -> Path:
    """Train (or resume) the run ``cfg.run_dir``; returns the exported checkpoint directory."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from tumorscope.tasks.joint import JointTask
    from tumorscope.transforms.augment import build_augment

    _check_precision(cfg)
    run_dir = cfg.run_dir
    ckpt_path = None
    if resume:
        ckpt_path = latest_checkpoint(run_dir)
        if ckpt_path is None:
            raise TumorscopeError(run_dir, "no checkpoint to resume from (checkpoints/last.ckpt "
                                  "or step.ckpt)")
    elif latest_checkpoint(run_dir) is not None:
        raise TumorscopeError(run_dir, "run already has checkpoints; pass --resume to continue "
                              "it or choose another output.run_name")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    index, split = prepare_split(cfg, data_root)
    m = cfg.model
    train_ds = SliceDataset(split.train, m.in_channels, m.input_size, m.normalization,
                            augment=build_augment(cfg.augment), cache=cfg.data.cache)
    stats = dataset_stats(train_ds) if m.normalization == "global" else None
    train_ds.stats = stats
    train_loader, val_loader = _loaders(cfg, split, stats, train_ds)
    task = JointTask(cfg.model_dump(mode="json"), index.classes, stats,
                     load_pretrained=ckpt_path is None)
    run_dir.mkdir(parents=True, exist_ok=True)
    if ckpt_path is not None:
        archive_metrics(run_dir)
    (run_dir / CONFIG_NAME).write_text(dump_config(cfg), encoding="utf-8")
    t = cfg.trainer
    trainer = L.Trainer(
        default_root_dir=run_dir, max_epochs=t.epochs, precision=t.precision,  # type: ignore[arg-type]
        accelerator=t.accelerator, devices=t.devices, strategy=t.strategy, num_nodes=t.num_nodes,
        limit_train_batches=t.limit_train_batches, limit_val_batches=t.limit_val_batches,
        gradient_clip_val=t.gradient_clip, accumulate_grad_batches=t.accumulate_grad_batches,
        deterministic=t.deterministic, log_every_n_steps=t.log_every_n_steps,
        callbacks=[*_callbacks(cfg, run_dir, val_loader is not None),
                   ResumableData(train_loader, val_loader)],
        use_distributed_sampler=False,  # EpochOrder shards by rank itself
        logger=[TensorBoardLogger(run_dir, name="tensorboard", version=""),
                CSVLogger(run_dir, name=CSV_DIR, version="")],
        num_sanity_val_steps=0, enable_model_summary=True,
    )
    trainer.fit(task, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=False)
    if not trainer.is_global_zero:
        return run_dir / "model"
    return export_run(cfg, trainer, index, split, stats)


def export_run(cfg: ExperimentConfig, trainer: L.Trainer, index: Any, split: Split,
               stats: tuple[float, float] | None) -> Path:
    """Export the best (or last) weights of a finished run as ``run_dir/model``."""
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    return export_checkpoint(cfg, Path(best) if best else None, index, split, stats)


def export_checkpoint(cfg: ExperimentConfig, source: Path | None = None, index: Any = None,
                      split: Split | None = None, stats: tuple[float, float] | None = None,
                      out: Path | None = None, half: bool = False) -> Path:
    """Write a run's Lightning checkpoint (default: best, else last) as safetensors + card.

    Works on an interrupted run too. EMA weights are exported when EMA was on.
    """
    from tumorscope.checkpoint import save_checkpoint

    ckpt_dir = cfg.run_dir / "checkpoints"
    if source is None:
        source = next((p for p in (ckpt_dir / "best.ckpt", ckpt_dir / "last.ckpt")
                       if p.is_file()), None)
        if source is None:
            raise TumorscopeError(cfg.run_dir, "no best.ckpt or last.ckpt to export")
    ckpt = torch.load(source, map_location="cpu", weights_only=False)  # our own run's file
    hparams = ckpt.get("hyper_parameters", {})
    if stats is None and hparams.get("stats"):
        stats = tuple(hparams["stats"])  # type: ignore[assignment]
    if index is None or split is None:
        index, split = prepare_split(cfg)
    prefix = "ema.module." if cfg.ema.enabled else "model."
    weights = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    card = model_card(cfg, index, split, stats, selected_from=source.name,
                      selected_epoch=int(ckpt.get("epoch", -1)),
                      validation=validation_metrics(cfg.run_dir, int(ckpt.get("epoch", -1))))
    out = out or cfg.run_dir / "model"
    save_checkpoint(out, weights, card, half=half)
    log.info("exported %s", out)
    return out


def validation_metrics(run_dir: Path, epoch: int) -> dict[str, float]:
    """The validation metrics logged at ``epoch`` (from the run's CSV logs)."""
    df = read_run_metrics(run_dir)
    if df.empty or "epoch" not in df:
        return {}
    cols = [c for c in df.columns if c.startswith("val/")]
    rows = df[(df["epoch"] == epoch) & df[cols].notna().any(axis=1)] if cols else df.iloc[0:0]
    if rows.empty:
        return {}
    return {c.removeprefix("val/"): float(rows[c].dropna().iloc[-1]) for c in cols
            if rows[c].notna().any()}


def model_card(cfg: ExperimentConfig, index: Any, split: Split,
               stats: tuple[float, float] | None, **extra: Any) -> dict[str, Any]:
    """The JSON card stored beside the weights."""
    from tumorscope import __version__

    return {
        "name": cfg.name, "task": cfg.task, "classes": index.classes,
        "model": cfg.model.model_dump(mode="json"),
        "preprocessing": {"input_size": cfg.model.input_size, "in_channels": cfg.model.in_channels,
                          "intensity": "per-image min-max to [0, 1]",
                          "normalization": cfg.model.normalization,
                          "stats": list(stats) if stats else None},
        "data": {"dataset": cfg.data.dataset, "root": cfg.data.root,
                 "split": {**split.describe(), "source": index.info.get("split"),
                           "folds": cfg.data.folds, "seed": cfg.seed}},
        "training_config": cfg.model_dump(mode="json"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tumorscope_version": __version__,
        "intended_use": "Research only. Not a medical device; not for diagnosis.",
        **extra,
    }


def config_for_resume(run_dir: Path, overrides: list[str]) -> ExperimentConfig:
    """The config a run was started with, plus overrides (e.g. more epochs)."""
    path = run_dir / CONFIG_NAME
    if not path.is_file():
        raise TumorscopeError(run_dir, f"not a tumorscope run ({CONFIG_NAME} missing)")
    cfg = load_config(path, overrides)
    root = run_dir.parent
    return cfg.model_copy(update={"output": cfg.output.model_copy(
        update={"root": str(root), "run_name": run_dir.name})})
