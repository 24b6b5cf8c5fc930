"""LightningModule for the joint task: segmentation loss + classification loss, EMA weights,
validation metrics reduced across processes (DDP-safe)."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from tumorscope.config import JointExperiment
from tumorscope.errors import ConfigError
from tumorscope.metrics import classification_metrics, confusion_matrix, per_image_dice
from tumorscope.models import joint_from_config
from tumorscope.models.joint import own_outline
from tumorscope.tasks.adversary import FeatureTap, SourceAdversary, ramp
from tumorscope.tasks.base import EmaModule
from tumorscope.tasks.optim import configure_optimisation, parameter_groups
from tumorscope.uncertainty import no_tumour_class


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
            return cast(torch.Tensor, sum(p(logits, target) for p in self.parts))

    return Sum()


class JointTask(EmaModule):
    """Trains the joint UNet; validates (and exports) the EMA weights when EMA is on."""

    def __init__(self, config: dict[str, Any], classes: list[str],
                 stats: tuple[float, float] | None = None, load_pretrained: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = JointExperiment.model_validate(config)
        self.classes = classes
        self.model = joint_from_config(self.cfg.model.model_dump(), len(classes),
                                       load_pretrained=load_pretrained)
        self._setup_weights(self.cfg, load_pretrained)
        self.seg_loss = _segmentation_loss(self.cfg.loss.segmentation)
        self.no_tumour = self._no_tumour_class()
        self.tap = FeatureTap()
        self.adversary = self._source_adversary()
        self._reset_val()

    def _source_adversary(self) -> SourceAdversary | None:
        """The dataset adversary of ``loss.source_adversary``, fed by a hook on the training
        model's encoder (registered after the EMA copy was made, which has none)."""
        adversary = self.cfg.loss.source_adversary
        if adversary is None:
            return None
        if self.cfg.model.arch == "plain-unet":
            raise ConfigError("loss.source_adversary", "needs an smp encoder (model.arch "
                              "unet, unetplusplus or fpn), not plain-unet")
        encoder = cast(nn.Module, self.model.encoder)
        encoder.register_forward_hook(self.tap)
        dim = int(cast(list[int], encoder.out_channels)[-1])
        return SourceAdversary(dim, len(self.classes), len(adversary.sources))

    def _no_tumour_class(self) -> int | None:
        """The "no tumour" class, which ``loss.type_sources`` needs; None when it is off."""
        if self.cfg.loss.type_sources is None:
            return None
        none = no_tumour_class(self.classes)  # the names inference and calibration accept
        if none is None:
            raise ConfigError("loss.type_sources", "needs a 'no tumour' class (data.dataset: "
                              f"mri-mix); these classes are {self.classes}")
        return self.classes.index(none)

    # -- steps -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(x)

    def _losses(self, batch: dict[str, Any], mask_logits: torch.Tensor,
                class_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        seg = self.seg_loss(own_outline(mask_logits, batch.get("outline")), batch["mask"])
        cls = self._class_loss(class_logits, batch["label"], batch.get("typed"))
        total = self.cfg.loss.segmentation_weight * seg + self.cfg.loss.classification_weight * cls
        return {"loss": total, "seg_loss": seg, "cls_loss": cls}

    def _class_loss(self, logits: torch.Tensor, labels: torch.Tensor,
                    typed: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy; a tumour slice whose dataset is not in ``loss.type_sources`` scores
        only the summed probability of the tumour classes (its type left open), smoothed
        the way cross-entropy is."""
        smoothing = self.cfg.loss.label_smoothing
        if self.no_tumour is None or typed is None:
            return F.cross_entropy(logits, labels, label_smoothing=smoothing)
        exact = F.cross_entropy(logits, labels, label_smoothing=smoothing, reduction="none")
        log_p = logits.float().log_softmax(1)
        tumour = [c for c in range(logits.shape[1]) if c != self.no_tumour]
        any_tumour = ((1 - smoothing) * -log_p[:, tumour].logsumexp(1)
                      + smoothing * -log_p.mean(1))
        return torch.where(self._open_type(labels, typed), any_tumour.to(exact.dtype),
                           exact).mean()

    def _open_type(self, labels: torch.Tensor, typed: torch.Tensor) -> torch.Tensor:
        """The tumour slices whose type is left open (``loss.type_sources``)."""
        return ~typed & (labels != self.no_tumour)

    def _adversary_loss(self, adversary: SourceAdversary,
                        batch: dict[str, Any]) -> torch.Tensor:
        """The dataset adversary's cross-entropy, its gradient reversed into the encoder
        with a strength rising over training; logs how often it guesses the dataset."""
        progress = self.global_step / max(1, int(self.trainer.estimated_stepping_batches))
        logits = adversary(self.tap.deepest(), batch["label"], ramp(progress))
        bs = logits.shape[0]
        self.log("train/source_acc", (logits.argmax(1) == batch["source"]).float().mean(),
                 batch_size=bs)
        loss = F.cross_entropy(logits, batch["source"])
        self.log("train/source_loss", loss, batch_size=bs)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self._losses(batch, *self.model(batch["image"]))
        setting = self.cfg.loss.source_adversary
        if self.adversary is not None and setting is not None:
            losses["loss"] = losses["loss"] + setting.weight * self._adversary_loss(
                self.adversary, batch)
        bs = batch["image"].shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=bs)
        self.log("train/seg_loss", losses["seg_loss"], batch_size=bs)
        self.log("train/cls_loss", losses["cls_loss"], batch_size=bs)
        return losses["loss"]

    def _reset_val(self) -> None:
        k = len(self.classes)
        self._cm = np.zeros((k, k), dtype=np.int64)
        self._dice = np.zeros(2, dtype=np.float64)  # sum of Dice over tumour images, count

    def on_validation_epoch_start(self) -> None:
        self._reset_val()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        mask_logits, class_logits = self.eval_model()(batch["image"])
        losses = self._losses(batch, mask_logits, class_logits)
        self.log("val/loss", losses["loss"], sync_dist=True, batch_size=batch["image"].shape[0])
        # the same metric code as `tumorscope evaluate` (metrics.py), on this batch; a slice
        # whose type is left open counts any tumour class as right, as its loss does, so
        # model selection does not reward the cue the loss stopped teaching
        predicted = class_logits.argmax(1)
        if self.no_tumour is not None and batch.get("typed") is not None:
            open_type = self._open_type(batch["label"], batch["typed"])
            predicted = torch.where(open_type & (predicted != self.no_tumour), batch["label"],
                                    predicted)
        self._cm += confusion_matrix(batch["label"].cpu().numpy(), predicted.cpu().numpy(),
                                     len(self.classes))
        pred = (own_outline(mask_logits, batch.get("outline")) > 0).cpu().numpy()[:, 0]
        true = (batch["mask"] > 0.5).cpu().numpy()[:, 0]
        tumour = true.any(axis=(1, 2))
        self._dice += [per_image_dice(pred[tumour], true[tumour]).sum(), tumour.sum()]

    def on_validation_epoch_end(self) -> None:
        reduce = self.trainer.strategy.reduce
        cm = reduce(torch.tensor(self._cm, device=self.device), reduce_op="sum").cpu().numpy()
        dice = reduce(torch.tensor(self._dice, device=self.device), reduce_op="sum").cpu()
        scores = classification_metrics(cm, self.classes)
        acc, macro_f1 = cast(float, scores["accuracy"]), cast(float, scores["macro_f1"])
        mean_dice = float(dice[0] / dice[1]) if dice[1] > 0 else 0.0
        self.log_dict({"val/acc": acc, "val/macro_f1": macro_f1, "val/dice": mean_dice,
                       "val/score": (macro_f1 + mean_dice) / 2}, prog_bar=True)

    # -- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        encoder = cast(nn.Module, self.model.encoder)
        groups = parameter_groups(self.model, encoder)
        if self.adversary is not None:
            groups["head"] += list(self.adversary.parameters())
        return configure_optimisation(self.cfg, groups)
