"""Optimiser and learning-rate schedule for every task, from the ``optim`` and ``scheduler``
sections: differential learning rates (the pretrained body at ``lr * encoder_lr_mult``, or
split by depth into ``layer_groups`` with rates rising geometrically to the head's), a frozen
body for the first ``freeze_encoder_epochs`` or a stage's ``freeze_body`` (transfer
learning), warm-up, cosine (restarting per stage) or reduce-on-plateau."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tumorscope.config import ExperimentConfig

BODY = "encoder"  # the parameter group(s) that learn slower and may start frozen


def is_body(name: str) -> bool:
    """Whether parameter group ``name`` is (a depth slice of) the body."""
    return name == BODY or name.startswith(f"{BODY}.")


def parameter_groups(model: nn.Module, body: nn.Module | None) -> dict[str, list[nn.Parameter]]:
    """``{"encoder": body parameters, "head": everything else}`` (no body: one group)."""
    if body is None:
        return {"head": list(model.parameters())}
    body_params = list(body.parameters())
    ids = {id(p) for p in body_params}
    return {BODY: body_params, "head": [p for p in model.parameters() if id(p) not in ids]}


def layer_groups(body_groups: list[list[nn.Parameter]], head: list[nn.Parameter]
                 ) -> dict[str, list[nn.Parameter]]:
    """``{"encoder.0": stem, ..., "encoder.{n-1}": deepest body group, "head": head}``."""
    return {**{f"{BODY}.{i}": g for i, g in enumerate(body_groups)}, "head": head}


def lr_mult(cfg: ExperimentConfig, name: str, groups: int) -> float:
    """A group's learning-rate multiplier: ``encoder_lr_mult`` for the body; with several
    body groups, geometric from ``encoder_lr_mult`` (stem) towards 1 (the head)."""
    if not is_body(name):
        return 1.0
    if name == BODY:
        return cfg.optim.encoder_lr_mult
    depth = int(name.rsplit(".", 1)[1])
    return float(cfg.optim.encoder_lr_mult ** (1 - depth / groups))


def _optimizer(cfg: ExperimentConfig, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=0.9, weight_decay=o.weight_decay,
                               nesterov=True)
    if o.name == "adam":
        return torch.optim.Adam(groups, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "adamax":
        return torch.optim.Adamax(groups, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)


def lr_factor(cfg: ExperimentConfig, frozen: bool) -> Callable[[int], float]:
    """Epoch -> learning-rate multiplier of one group (``frozen``: the body under
    ``freeze_encoder_epochs``), combining freeze, warm-up and the cosine decay."""
    o, s = cfg.optim, cfg.scheduler
    epochs = cfg.trainer.epochs
    floor = s.min_lr / o.lr

    def factor(epoch: int) -> float:
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

    return factor


def configure_optimisation(cfg: ExperimentConfig,
                           groups: dict[str, list[nn.Parameter]]) -> dict[str, Any]:
    """What a LightningModule's ``configure_optimizers`` returns, for named parameter groups."""
    o, s = cfg.optim, cfg.scheduler
    body_groups = sum(is_body(n) for n in groups)
    param_groups = [{"params": params, "name": name, "lr": o.lr * lr_mult(cfg, name, body_groups)}
                    for name, params in groups.items()]
    opt = _optimizer(cfg, param_groups)
    if s.name == "plateau":
        sched: Any = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode=cfg.early_stopping.mode, factor=s.factor, patience=s.patience,
            min_lr=s.min_lr)
        return {"optimizer": opt, "lr_scheduler": {
            "scheduler": sched, "monitor": cfg.early_stopping.monitor, "interval": "epoch"}}
    from tumorscope.tasks.stages import staged_lr_factor

    staged = bool(getattr(cfg, "stages", None))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, [staged_lr_factor(cfg, is_body(name)) if staged else lr_factor(cfg, is_body(name))
              for name in groups])
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
