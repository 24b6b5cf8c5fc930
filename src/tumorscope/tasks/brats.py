"""LightningModule for BraTS: region logits (WT, TC, ET) with focal + Dice loss on sigmoid
outputs, EMA weights, and validation Dice per region reduced across processes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tumorscope.config import BratsExperiment
from tumorscope.io.brats import REGIONS
from tumorscope.models.brats import brats_from_config
from tumorscope.tasks.base import EmaModule
from tumorscope.tasks.optim import configure_optimisation, parameter_groups


def region_loss(name: str, gamma: float) -> nn.Module:
    """MONAI's Dice / focal / BCE losses on sigmoid region outputs."""
    from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, FocalLoss

    if name == "focal+dice":
        return DiceFocalLoss(sigmoid=True, gamma=gamma, smooth_nr=1e-5, smooth_dr=1e-5)
    if name == "dice+bce":
        return DiceCELoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)
    if name == "focal":
        return FocalLoss(gamma=gamma, use_softmax=False)
    return DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)


class BratsTask(EmaModule):
    """Trains a 2D or 3D region segmenter; validates (and exports) the EMA weights."""

    def __init__(self, config: dict[str, Any], classes: list[str],
                 stats: tuple[float, float] | None = None, load_pretrained: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = BratsExperiment.model_validate(config)
        self.model = brats_from_config(self.cfg.model.model_dump(), load_pretrained=load_pretrained)
        self._setup_weights(self.cfg, load_pretrained)
        self.loss = region_loss(self.cfg.loss.name, self.cfg.loss.focal_gamma)
        self._sums = torch.zeros(2, len(REGIONS), dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self.model(batch["image"]), batch["target"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def on_validation_epoch_start(self) -> None:
        self._sums = torch.zeros(2, len(REGIONS), dtype=torch.float64)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self.eval_model()(batch["image"])
        target = batch["target"]
        self.log("val/loss", self.loss(logits, target), sync_dist=True,
                 batch_size=target.shape[0])
        pred = logits > 0
        truth = target > 0.5
        axes = tuple(range(2, pred.ndim))
        inter = (pred & truth).sum(axes).double()
        total = (pred.sum(axes) + truth.sum(axes)).double()
        dice = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))
        self._sums[0] += dice.sum(0).cpu()  # mean Dice over samples, per region
        self._sums[1] += dice.shape[0]

    def on_validation_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self._sums.to(self.device), reduce_op="sum").cpu()
        per_region = (sums[0] / sums[1].clamp(min=1)).tolist()
        scores = {f"val/dice_{name.lower()}": v for name, v in zip(REGIONS, per_region,
                                                                     strict=True)}
        scores["val/dice"] = sum(per_region) / len(per_region)
        self.log_dict(scores, prog_bar=True)

    def configure_optimizers(self) -> Any:
        body = getattr(self.model, "encoder", None)
        return configure_optimisation(self.cfg, parameter_groups(
            self.model, body if isinstance(body, nn.Module) else None))
