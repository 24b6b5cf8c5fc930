"""What every task's LightningModule shares: EMA weights (validated and exported), RNG
states in checkpoints (a resumed run continues exactly), and the EMA update after each
optimiser step."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import lightning as L
from torch import nn

from tumorscope.config import ExperimentConfig
from tumorscope.tasks.rng import rng_states, set_rng_states

log = logging.getLogger("tumorscope.train")


class EmaModule(L.LightningModule):
    """Subclasses set ``self.model``, then call :meth:`_setup_weights` (warm start, EMA)."""

    model: nn.Module

    def _setup_weights(self, cfg: ExperimentConfig, load_pretrained: bool = True) -> None:
        """Warm-start ``self.model`` from ``cfg.init_weights`` (a new run only: a resumed run's
        checkpoint has its weights), then start the EMA copy from it."""
        if load_pretrained and cfg.init_weights:
            from tumorscope.models.pretrained import load_matching

            loaded, fresh = load_matching(self.model, Path(cfg.init_weights).expanduser())
            log.info("init_weights %s: %d tensors loaded, %d initialised fresh%s",
                     cfg.init_weights, loaded, len(fresh), f" ({', '.join(fresh[:4])})"
                     if fresh else "")
        self.ema: Any = None  # timm ModelEmaV3
        if cfg.ema.enabled:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=cfg.ema.decay, use_warmup=cfg.ema.warmup)
            self.ema.requires_grad_(False)  # an average, not trained: DDP must not wait for it

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
        return cast(nn.Module, self.ema.module) if self.ema is not None else self.model
