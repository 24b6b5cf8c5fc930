"""Training stages: transfer learning (body frozen, then unfrozen) and progressive resizing
(64 -> 128 -> 256 px, weights carried over) as one epoch-indexed plan.

A config with a ``stages`` list (the classify task) is planned stage by stage; any other
config is one stage, preceded by a frozen-body stage of ``optim.freeze_encoder_epochs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from tumorscope.config import ExperimentConfig


@dataclass(frozen=True)
class Stage:
    """Epochs ``[first, first + epochs)`` at ``input_size``; LR restarts at ``lr_mult``."""

    first: int
    epochs: int
    input_size: int | None
    freeze_body: bool
    lr_mult: float = 1.0


def plan(cfg: ExperimentConfig) -> list[Stage]:
    """The run's stages, in order, covering ``trainer.epochs``."""
    configured = getattr(cfg, "stages", None) or []
    if configured:
        stages, first = [], 0
        for s in configured:
            stages.append(Stage(first, s.epochs, s.input_size, s.freeze_body, s.lr_mult))
            first += s.epochs
        return stages
    frozen = min(cfg.optim.freeze_encoder_epochs, cfg.trainer.epochs)
    rest = Stage(frozen, cfg.trainer.epochs - frozen, None, False)
    return [Stage(0, frozen, None, True), rest] if frozen else [rest]


def stage_at(stages: list[Stage], epoch: int) -> Stage:
    """The stage training is in at ``epoch`` (the last one past the end)."""
    return next((s for s in stages if epoch < s.first + s.epochs), stages[-1])


def frozen_epochs(cfg: ExperimentConfig) -> set[int]:
    """Epochs whose body gradients are dropped (a frozen pretrained body)."""
    return {e for s in plan(cfg) if s.freeze_body for e in range(s.first, s.first + s.epochs)}


def input_sizes(cfg: ExperimentConfig) -> dict[int, int]:
    """Epoch -> training input size when any stage sets one (progressive resizing); a stage
    without a size trains at ``model.input_size``. Empty when no stage sets a size."""
    stages = plan(cfg)
    if all(s.input_size is None for s in stages):
        return {}
    final = int(getattr(cfg.model, "input_size", 0))  # type: ignore[attr-defined]
    return {e: s.input_size or final for s in stages for e in range(s.first, s.first + s.epochs)}


def first_final_epoch(cfg: ExperimentConfig) -> int:
    """The first epoch at the exported input size (early stopping waits for it)."""
    return next((e for e in range(cfg.trainer.epochs) if is_final(cfg, e)), 0)


def is_final(cfg: ExperimentConfig, epoch: int) -> bool:
    """Whether ``epoch`` trains at the input size the model is exported at."""
    size = stage_at(plan(cfg), epoch).input_size
    return size is None or size == getattr(cfg.model, "input_size", size)  # type: ignore[attr-defined]


def staged_lr_factor(cfg: ExperimentConfig, body: bool) -> Callable[[int], float]:
    """Epoch -> learning-rate multiplier for a config with ``stages``: each stage restarts
    at ``lr_mult`` with its own warm-up (``scheduler.warmup_epochs``) and cosine decay; a
    frozen body's rate is 0."""
    s, stages = cfg.scheduler, plan(cfg)
    floor = s.min_lr / cfg.optim.lr

    def factor(epoch: int) -> float:
        stage = stage_at(stages, epoch)
        if body and stage.freeze_body:
            return 0.0
        offset, value = epoch - stage.first, stage.lr_mult
        warm = min(s.warmup_epochs, stage.epochs - 1)
        if warm and offset < warm:
            value *= (offset + 1) / (warm + 1)
        if s.name == "cosine":
            t = min(1.0, max(0.0, (offset - warm) / max(1, stage.epochs - warm)))
            value *= floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        return value

    return factor
