"""LightningModule for the joint task: segmentation loss + classification loss, EMA weights,
validation metrics reduced across processes (DDP-safe)."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from tumorscope.models import joint_from_config
from tumorscope.training.config import ExperimentConfig
from tumorscope.training.rng import rng_states, set_rng_states


def _segmentation_loss(name: str) -> nn.Module:
    parts: list[nn.Module] = []
    if "dice" in name:
        parts.append(smp.losses.DiceLoss(mode="binary", from_logits=True))
    if "bce" in name:
        parts.append(nn.BCEWithLogitsLoss())
    if "focal" in name:
        parts.append(smp.losses.FocalLoss(mode="binary"))

    class Sum(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.parts = nn.ModuleList(parts)

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return sum(p(logits, target) for p in self.parts)  # type: ignore[return-value]

    return Sum()


class JointTask(L.LightningModule):
    """Trains the joint UNet; validates (and exports) the EMA weights when EMA is on."""

    def __init__(self, config: dict[str, Any], classes: list[str],
                 stats: tuple[float, float] | None = None, load_pretrained: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = ExperimentConfig.model_validate(config)
        self.classes = classes
        self.model = joint_from_config(self.cfg.model.model_dump(), len(classes),
                                       load_pretrained=load_pretrained)
        self.ema: nn.Module | None = None
        if self.cfg.ema.enabled:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=self.cfg.ema.decay,
                                  use_warmup=self.cfg.ema.warmup)
        self.seg_loss = _segmentation_loss(self.cfg.loss.segmentation)
        self._reset_val()

    # -- steps -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(x)

    def _losses(self, batch: dict[str, Any], mask_logits: torch.Tensor,
                class_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        seg = self.seg_loss(mask_logits, batch["mask"])
        cls = F.cross_entropy(class_logits, batch["label"],
                              label_smoothing=self.cfg.loss.label_smoothing)
        total = self.cfg.loss.segmentation_weight * seg + self.cfg.loss.classification_weight * cls
        return {"loss": total, "seg_loss": seg, "cls_loss": cls}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self._losses(batch, *self.model(batch["image"]))
        bs = batch["image"].shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=bs)
        self.log("train/seg_loss", losses["seg_loss"], batch_size=bs)
        self.log("train/cls_loss", losses["cls_loss"], batch_size=bs)
        return losses["loss"]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "rng_states" in checkpoint:  # dropout continues as if never interrupted
            set_rng_states(checkpoint["rng_states"])

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # here, not in on_train_batch_end: checkpoint callbacks run before that module hook,
        # so a mid-epoch checkpoint would miss this step's EMA update
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step + 1)

    def eval_model(self) -> nn.Module:
        """The weights used for validation and export."""
        return self.ema.module if self.ema is not None else self.model

    def _reset_val(self) -> None:
        k = len(self.classes)
        self._cm = torch.zeros(k, k, dtype=torch.float64)
        self._dice = torch.zeros(2, dtype=torch.float64)  # sum of Dice over tumour images, count

    def on_validation_epoch_start(self) -> None:
        self._reset_val()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        mask_logits, class_logits = self.eval_model()(batch["image"])
        losses = self._losses(batch, mask_logits, class_logits)
        self.log("val/loss", losses["loss"], sync_dist=True, batch_size=batch["image"].shape[0])
        pred = class_logits.argmax(1).cpu()
        idx = batch["label"].cpu() * len(self.classes) + pred
        self._cm += torch.bincount(idx, minlength=len(self.classes) ** 2).view_as(self._cm)
        pm = (mask_logits > 0).flatten(1).float()
        tm = (batch["mask"] > 0.5).flatten(1).float()
        inter, total = (pm * tm).sum(1), pm.sum(1) + tm.sum(1)
        tumour = tm.sum(1) > 0
        dice = (2 * inter / total.clamp(min=1))[tumour]
        self._dice += torch.tensor([dice.sum().item(), float(tumour.sum())],
                                   dtype=torch.float64)

    def on_validation_epoch_end(self) -> None:
        cm = self.trainer.strategy.reduce(self._cm.to(self.device), reduce_op="sum").cpu()
        dice = self.trainer.strategy.reduce(self._dice.to(self.device), reduce_op="sum").cpu()
        tp = cm.diag()
        precision = tp / cm.sum(0).clamp(min=1)
        recall = tp / cm.sum(1).clamp(min=1)
        f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        acc = float(tp.sum() / cm.sum().clamp(min=1))
        macro_f1 = float(f1.mean())
        mean_dice = float(dice[0] / dice[1]) if dice[1] > 0 else 0.0
        self.log_dict({"val/acc": acc, "val/macro_f1": macro_f1, "val/dice": mean_dice,
                       "val/score": (macro_f1 + mean_dice) / 2}, prog_bar=True)

    # -- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        o, s = self.cfg.optim, self.cfg.scheduler
        encoder = list(self.model.encoder.parameters())
        enc_ids = {id(p) for p in encoder}
        rest = [p for p in self.model.parameters() if id(p) not in enc_ids]
        groups = [{"params": encoder, "lr": o.lr * o.encoder_lr_mult, "name": "encoder"},
                  {"params": rest, "lr": o.lr, "name": "head"}]
        if o.name == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=o.lr, momentum=0.9,
                                                         weight_decay=o.weight_decay, nesterov=True)
        elif o.name == "adam":
            opt = torch.optim.Adam(groups, lr=o.lr, weight_decay=o.weight_decay)
        else:
            opt = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
        if s.name == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode=self.cfg.early_stopping.mode, factor=s.factor, patience=s.patience,
                min_lr=s.min_lr)
            return {"optimizer": opt, "lr_scheduler": {
                "scheduler": sched, "monitor": self.cfg.early_stopping.monitor,
                "interval": "epoch"}}
        epochs = self.cfg.trainer.epochs
        floor = s.min_lr / o.lr

        def factor(epoch: int, frozen: bool) -> float:
            if frozen and epoch < o.freeze_encoder_epochs:
                return 0.0  # transfer learning: train only decoder and heads first
            value = 1.0
            if s.warmup_epochs and epoch < s.warmup_epochs:
                value = (epoch + 1) / (s.warmup_epochs + 1)
            if s.name == "cosine":
                start = max(s.warmup_epochs, o.freeze_encoder_epochs if frozen else 0)
                span = max(1, epochs - start)
                t = min(1.0, max(0.0, (epoch - start) / span))
                value *= floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
            return value

        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, [lambda e: factor(e, True), lambda e: factor(e, False)])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
