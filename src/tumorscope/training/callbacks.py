"""Lightning callbacks of a training run: checkpoints, early stopping, progress, epoch log
lines, and :class:`ResumableData` (the loaders' position within an epoch)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from tumorscope.config import ExperimentConfig
from tumorscope.data.sampling import Loaders, ResumableLoader
from tumorscope.tasks.optim import is_body
from tumorscope.tasks.stages import frozen_epochs, input_sizes

CHECKPOINT_DIR = "checkpoints"


class EpochSummary(L.Callback):
    """One plain log line per epoch, readable in a log file (progress bars are not)."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        shown = {k: float(v) for k, v in trainer.callback_metrics.items()
                 if k.startswith(("val/", "train/loss"))}
        text = "  ".join(f"{k}={v:.4f}" for k, v in sorted(shown.items()))
        print(f"[epoch {trainer.current_epoch}] step={trainer.global_step}  {text}", flush=True)


class ResumableData(L.Callback):
    """Shards the loaders' orders by rank and records training progress within the epoch."""

    def __init__(self, train: ResumableLoader, val: ResumableLoader | None = None) -> None:
        self.train, self.val = train, val

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for loader in (self.train, self.val):
            if loader is not None:
                loader.order.rank, loader.order.world = trainer.global_rank, trainer.world_size

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.train.batches_done and trainer.progress_bar_callback is not None:
            # resumed mid-epoch: Lightning skips on_train_epoch_start, so the bar has no total
            trainer.progress_bar_callback.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train.batches_done, self.train.epoch_finished = 0, False  # not called mid-epoch

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        # runs before the checkpoint callbacks, which Lightning always orders last
        # counted here, not read from Lightning's progress counter: after a mid-epoch resume
        # that counter starts again from the restart, not from the epoch's first batch
        self.train.batches_done += 1
        self.train.epoch_finished = self.train.batches_done >= trainer.num_training_batches


class FreezeBody(L.Callback):
    """Keeps the body's parameter groups unchanged during ``epochs`` (transfer learning)
    whatever the scheduler: their gradients are dropped before each step. (LambdaLR
    schedules also set their learning rate to 0; reduce-on-plateau cannot.)"""

    def __init__(self, epochs: set[int]) -> None:
        self.epochs = epochs

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: Any) -> None:
        if trainer.current_epoch not in self.epochs:
            return
        for group in optimizer.param_groups:
            if is_body(str(group.get("name", ""))):
                for param in group["params"]:
                    param.grad = None


class ProgressiveResize(L.Callback):
    """Sets the training and validation input size of each epoch (progressive resizing);
    also on a mid-epoch resume, where Lightning skips ``on_train_epoch_start``."""

    def __init__(self, sizes: dict[int, int], loaders: Loaders) -> None:
        self.sizes, self.loaders = sizes, loaders
        loaders.train.sizes = sizes  # applied as each epoch's iterator (and its workers) starts

    def _apply(self, epoch: int) -> None:
        size = self.sizes.get(epoch)
        if size is None:
            return
        for loader in (self.loaders.train, self.loaders.val):
            if loader is not None:
                loader.dataset.size = size  # type: ignore[attr-defined]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._apply(trainer.current_epoch)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._apply(trainer.current_epoch)


class StepCheckpoint(ModelCheckpoint):
    """``step.ckpt`` every N steps, except after an epoch's last step: that moment is saved as
    ``last.ckpt`` once the epoch is validated. A run killed during validation then resumes
    before the last step and validates the epoch, instead of resuming past an epoch that was
    never validated (which early stopping cannot judge)."""

    def __init__(self, loader: ResumableLoader, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.loader = loader

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self.loader.epoch_finished:  # ResumableData has counted this batch already
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def standard_callbacks(cfg: ExperimentConfig, run_dir: Path, loaders: Loaders,
                       extra: Sequence[L.Callback] = ()) -> list[L.Callback]:
    """Loader positions, checkpoints (best, last, every N steps), LR monitor, epoch lines,
    progress bar, early stopping when there is a validation fold, then ``extra``."""
    from lightning.pytorch.callbacks import (
        EarlyStopping,
        LearningRateMonitor,
        RichProgressBar,
        TQDMProgressBar,
    )

    has_val = loaders.val is not None
    ckpt_dir = run_dir / CHECKPOINT_DIR
    es = cfg.early_stopping
    callbacks: list[L.Callback] = [
        ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=es.monitor if has_val else None,
                        mode=es.mode, save_top_k=1, save_last=True),
        StepCheckpoint(loaders.train, dirpath=ckpt_dir, filename="step", save_top_k=1,
                       every_n_train_steps=cfg.trainer.checkpoint_every_n_steps),
        LearningRateMonitor(logging_interval="epoch"),
        EpochSummary(),
        RichProgressBar() if sys.stdout.isatty() else TQDMProgressBar(refresh_rate=10),
        ResumableData(loaders.train, loaders.val),  # after the bar: it may give it a total
    ]
    if es.enabled and has_val:
        callbacks.append(EarlyStopping(monitor=es.monitor, mode=es.mode, patience=es.patience))
    frozen, sizes = frozen_epochs(cfg), input_sizes(cfg)
    if frozen:
        callbacks.append(FreezeBody(frozen))
    if sizes:
        callbacks.append(ProgressiveResize(sizes, loaders))
    return [*callbacks, *extra]
