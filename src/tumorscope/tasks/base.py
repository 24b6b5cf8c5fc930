"""What every task's LightningModule shares: EMA weights (validated and exported), RNG
states in checkpoints (a resumed run continues exactly), the EMA update after each
optimiser step, and ``optim.train_only`` (the rest of the model frozen as loaded)."""

from __future__ import annotations

import logging
import warnings
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
        self.frozen = freeze_except(self.model, cfg.optim.train_only)
        self.ema: Any = None  # timm ModelEmaV3
        if cfg.ema.enabled:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=cfg.ema.decay, use_warmup=cfg.ema.warmup)
            self.ema.requires_grad_(False)  # an average, not trained: DDP must not wait for it

    def setup(self, stage: str) -> None:
        # Lightning's "Found N module(s) in eval mode at the start of training" counts the EMA
        # copy, an average that is never trained, so it fires on every run with EMA; set in
        # each process (spawned ones too), replaced by on_train_start's check
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")

    def on_train_start(self) -> None:
        """Name any module that trains but starts in eval mode (not the EMA copy, not the
        frozen modules, which are meant to be)."""
        meant = {id(m) for module in [*self.frozen, *([self.ema] if self.ema else [])]
                 for m in module.modules()}
        stray = [name for name, m in self.named_modules()
                 if not m.training and id(m) not in meant]
        if stray and self.global_rank == 0:
            log.warning("%d module(s) start training in eval mode (dropout off, BatchNorm "
                        "statistics fixed): %s", len(stray), ", ".join(stray[:5]))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Frozen modules run in eval mode, so their BatchNorm statistics stay as loaded
        (Lightning switches modules back to training mode around validation)."""
        for module in self.frozen:
            module.eval()

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


def freeze_except(model: nn.Module, prefixes: list[str] | None) -> list[nn.Module]:
    """Stop gradients to every parameter of ``model`` outside the named top-level modules
    ``prefixes``; returns the frozen modules (kept in eval mode by the task). None: nothing
    frozen. An unknown name is an error listing the model's modules."""
    if not prefixes:
        return []
    from tumorscope.errors import ConfigError

    children = dict(model.named_children())
    unknown = [p for p in prefixes if p not in children]
    if unknown:
        raise ConfigError("optim.train_only", f"no module {unknown} in the model; its modules: "
                          f"{sorted(children)}")
    frozen = [m for name, m in children.items() if name not in prefixes]
    for module in frozen:
        module.requires_grad_(False)
    return frozen
