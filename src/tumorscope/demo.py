"""``tumorscope demo``: the README's main job.

With the shipped default model: predict held-out real scans (one per class) and write overlays.
Without one: a short end-to-end run (train a little at small size, evaluate, predict).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from tumorscope.errors import TumorscopeError
from tumorscope.locations import REPO


def data_root() -> Path:
    """``$TUMORSCOPE_DATA`` or ``../shared/data`` beside the checkout."""
    return Path(os.environ.get("TUMORSCOPE_DATA", REPO.parent / "shared" / "data"))


def held_out_examples(figshare: Path, fold: int, per_class: int = 1) -> list[tuple[Path, str]]:
    """First ``per_class`` slices of each class in ``fold`` (a fold the model never saw)."""
    picked: dict[str, list[tuple[Path, str]]] = {}
    with (figshare / "meta.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if int(row["fold"]) != fold:
                continue
            bucket = picked.setdefault(row["label_name"], [])
            if len(bucket) < per_class:
                bucket.append((figshare / "images" / f"{row['id']}.jpg", row["label_name"]))
    return [item for items in picked.values() for item in items]


def run_demo(out: Path, checkpoint: Path | None = None) -> list[dict[str, Any]]:
    """Predict held-out scans with the default (or given) model; train a quick one if none."""
    from tumorscope.checkpoint.store import read_card
    from tumorscope.inference.outputs import predict_files
    from tumorscope.inference.predictor import Predictor
    from tumorscope.locations import default_checkpoint

    figshare = data_root() / "figshare"
    if not (figshare / "meta.csv").is_file():
        raise TumorscopeError(figshare, "demo data not found; set TUMORSCOPE_DATA, or run "
                              "`tumorscope predict YOUR_SCAN` on your own files")
    try:
        ckpt = checkpoint or default_checkpoint()
    except TumorscopeError:
        ckpt = _quick_model(out)
    card = read_card(ckpt)
    fold = card.data.split.test_fold
    examples = held_out_examples(figshare, fold)
    records = predict_files(Predictor.from_checkpoint(ckpt), [p for p, _ in examples], out)
    for record, (_, truth) in zip(records, examples, strict=True):
        record["true_class"] = truth
    return records


def _quick_model(out: Path) -> Path:
    """No shipped model: train a small one for a few minutes on the CPU, then evaluate it."""
    from tumorscope.config import load_config
    from tumorscope.evaluation.evaluate import evaluate
    from tumorscope.training.run import train

    print("No default model found: training a small demo model (a few minutes on CPU)...")
    cfg = load_config(REPO / "configs" / "figshare" / "joint-lite0.yaml", [
        "model.input_size=128", "trainer.epochs=2", "data.limit_per_split=256",
        f"output.root={out / 'runs'}", "output.run_name=demo", "early_stopping.enabled=false"])
    if (cfg.run_dir / "model" / "model.json").is_file():
        return cfg.run_dir / "model"
    model = train(cfg)
    evaluate(model, cfg.data.test_fold, out / "evaluation")
    print(f"evaluation report: {out / 'evaluation' / 'report.html'}")
    return model
