"""Export a run's Lightning checkpoint (best, else last) as a shareable safetensors model
with its card; EMA weights when EMA was on."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tumorscope.checkpoint.card import build_card
from tumorscope.checkpoint.store import save_checkpoint
from tumorscope.config import ExperimentConfig
from tumorscope.data.prepare import prepare_split
from tumorscope.data.records import DatasetIndex
from tumorscope.data.splits import Split
from tumorscope.errors import TumorscopeError
from tumorscope.tasks.registry import get_task
from tumorscope.training.callbacks import CHECKPOINT_DIR
from tumorscope.training.ckpt_io import load_training_checkpoint
from tumorscope.training.history import read_run_metrics

log = logging.getLogger("tumorscope.export")


def export_checkpoint(cfg: ExperimentConfig, source: Path | None = None,
                      index: DatasetIndex | None = None, split: Split | None = None,
                      stats: tuple[float, float] | None = None, out: Path | None = None,
                      half: bool = False) -> Path:
    """Write a run's Lightning checkpoint (default: best, else last) as safetensors + card.

    Works on an interrupted run too. EMA weights are exported when EMA was on.
    """
    ckpt_dir = cfg.run_dir / CHECKPOINT_DIR
    if source is None:
        source = next((p for p in (ckpt_dir / "best.ckpt", ckpt_dir / "last.ckpt")
                       if p.is_file()), None)
        if source is None:
            raise TumorscopeError(cfg.run_dir, "no best.ckpt or last.ckpt to export")
    ckpt = load_training_checkpoint(source)  # never unpickles anything but tensors and values
    hparams: dict[str, Any] = ckpt.get("hyper_parameters", {})
    if stats is None and hparams.get("stats"):
        low, high = hparams["stats"]
        stats = (float(low), float(high))
    if index is None or split is None:
        index, split = prepare_split(cfg, use_pack=True)
    spec = get_task(cfg.task)
    prefix = spec.weights_prefix(cfg.ema.enabled)
    weights = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    epoch = int(ckpt.get("epoch", -1))
    card = build_card(cfg, index, split, spec.load("card_section")(cfg, stats),
                      selected_from=source.name, selected_epoch=epoch,
                      validation=validation_metrics(cfg.run_dir, epoch))
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
