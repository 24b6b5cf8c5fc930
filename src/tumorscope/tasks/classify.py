"""LightningModule for the classify task: a slice classifier (timm model or capsule network)
trained in stages, with EMA weights and validation metrics reduced across processes.

Validation logs accuracy and macro-F1 as they are; ``val/score`` (model selection, early
stopping, plateau LR) is macro-F1 minus 1 in epochs trained at another input size than the
exported one, so the selected checkpoint is always one of the final size.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from tumorscope.config import ClassifyExperiment
from tumorscope.metrics import classification_metrics, confusion_matrix
from tumorscope.models.capsule import lengths_from_logits, margin_loss, reconstruction_loss
from tumorscope.models.classifier import classifier_from_config
from tumorscope.tasks.base import EmaModule
from tumorscope.tasks.optim import configure_optimisation, layer_groups
from tumorscope.tasks.stages import is_final


class ClassifyTask(EmaModule):
    """Trains a classifier; validates (and exports) the EMA weights when EMA is on."""

    def __init__(self, config: dict[str, Any], classes: list[str],
                 stats: tuple[float, float] | None = None, load_pretrained: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = ClassifyExperiment.model_validate(config)
        self.classes = classes
        self.capsule = self.cfg.model.arch == "capsule"
        self.model = classifier_from_config(self.cfg.model.model_dump(), len(classes),
                                            load_pretrained=load_pretrained)
        self._setup_weights(self.cfg, load_pretrained)
        self._cm = np.zeros((len(classes), len(classes)), dtype=np.int64)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return cast(tuple[torch.Tensor], self.model(x))

    def _loss(self, net: Any, images: torch.Tensor, labels: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and class logits: cross-entropy, or the capsule margin loss (+ the
        reconstruction term when the capsule net has a decoder)."""
        if not self.capsule:
            (logits,) = net(images)
            return F.cross_entropy(logits, labels,
                                   label_smoothing=self.cfg.loss.label_smoothing), logits
        logits, capsules = net.logits_and_capsules(images)
        loss = margin_loss(lengths_from_logits(logits), labels)
        if net.decoder is not None and self.cfg.loss.reconstruction_weight:
            recon = net.reconstruct(capsules, labels)
            loss = loss + self.cfg.loss.reconstruction_weight * reconstruction_loss(recon, images)
        return loss, logits

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss(self.model, batch["image"], batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def on_validation_epoch_start(self) -> None:
        self._cm[:] = 0

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss, logits = self._loss(self.eval_model(), batch["image"], batch["label"])
        self.log("val/loss", loss, sync_dist=True, batch_size=batch["image"].shape[0])
        self._cm += confusion_matrix(batch["label"].cpu().tolist(),
                                     logits.argmax(1).cpu().tolist(), len(self.classes))

    def on_validation_epoch_end(self) -> None:
        reduce = self.trainer.strategy.reduce
        cm = reduce(torch.tensor(self._cm, device=self.device), reduce_op="sum").cpu().numpy()
        scores = classification_metrics(cm, self.classes)
        acc, macro_f1 = cast(float, scores["accuracy"]), cast(float, scores["macro_f1"])
        offset = 0.0 if is_final(self.cfg, self.current_epoch) else 1.0
        self.log_dict({"val/acc": acc, "val/macro_f1": macro_f1,
                       "val/score": macro_f1 - offset}, prog_bar=True)

    def configure_optimizers(self) -> Any:
        net = cast(Any, self.model)
        groups = layer_groups(net.body_groups(self.cfg.optim.layer_groups),
                              net.head_parameters())
        return configure_optimisation(self.cfg, groups)
