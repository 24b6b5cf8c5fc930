"""``tumorscope evaluate``: metrics of a checkpoint on one held-out patient fold, with a report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tumorscope.data import load_index
from tumorscope.data.dataset import load_record
from tumorscope.data.splits import make_split
from tumorscope.errors import ConfigError
from tumorscope.inference import Predictor
from tumorscope.io.writers import write_atomic, write_json
from tumorscope.metrics import (
    bootstrap_ci,
    classification_metrics,
    confusion_matrix,
    per_image_dice,
    segmentation_metrics,
)
from tumorscope.progress import track
from tumorscope.training.config import build_config, resolve_data_root

log = logging.getLogger("tumorscope.evaluate")


def fold_role(card: dict[str, Any], fold: int) -> str:
    """'test' (held out), 'validation' (used for model selection) or 'train' for this model."""
    split = card.get("data", {}).get("split", {})
    if fold == split.get("test_fold"):
        return "test"
    if fold == split.get("val_fold"):
        return "validation"
    return "train"


def evaluate(checkpoint: str | Path, fold: int, out_dir: str | Path,
             data_root: str | None = None, batch_size: int = 16, tta: bool = False,
             gallery: int = 8, allow_train_fold: bool = False,
             backend: str = "torch") -> dict[str, Any]:
    """Evaluate on every slice of ``fold``; writes ``metrics.json`` and ``report.html``.

    The reference back end (PyTorch) is the default so numbers reproduce on any machine.
    """
    predictor = Predictor.from_checkpoint(checkpoint, tta=tta, backend=backend)
    card = predictor.card
    cfg = build_config(card["training_config"], f"{checkpoint} (model card)")
    if not 0 <= fold < cfg.data.folds:
        raise ConfigError("--fold", f"fold must be in 0..{cfg.data.folds - 1}")
    role = fold_role(card, fold)
    if role == "train" and not allow_train_fold:
        raise ConfigError("--fold", f"fold {fold} was used to train this model; its metrics "
                          "would be inflated (pass --allow-train-fold to compute them anyway)")
    index = load_index(cfg.data.dataset, resolve_data_root(cfg, data_root))
    split = make_split(index, cfg.data.folds, fold, None, cfg.seed, cfg.data.fold_source)
    records = split.test
    labels, preds, probs, pred_masks, true_masks = [], [], [], [], []
    for start in track(range(0, len(records), batch_size), f"evaluating fold {fold}",
                       total=-(-len(records) // batch_size)):
        chunk = records[start:start + batch_size]
        loaded = [load_record(r) for r in chunk]
        outputs = predictor.predict_arrays([a for a, _ in loaded], batch_size,
                                           sources=[r.image for r in chunk])
        for r, (_, mask), (p, m) in zip(chunk, loaded, outputs, strict=True):
            labels.append(r.label)
            preds.append(int(np.argmax(p)))
            probs.append(p)
            pred_masks.append(m)
            true_masks.append(mask)
    classes = index.classes
    cm = confusion_matrix(labels, preds, len(classes))
    cls = classification_metrics(cm, classes)
    seg = segmentation_metrics(pred_masks, true_masks)
    dice = per_image_dice(pred_masks, true_masks)
    patients = np.array([r.patient for r in records])
    correct = (np.array(labels) == np.array(preds)).astype(float)
    tumour = np.array([m.any() for m in true_masks])
    ci = {
        "accuracy": bootstrap_ci(correct, np.mean, 500, groups=patients),
        "macro_f1": bootstrap_ci(np.stack([labels, preds], 1), _macro_f1(len(classes), classes),
                                 500, groups=patients),
        "dice_mean_tumour": bootstrap_ci(dice[tumour], np.mean, 500, groups=patients[tumour])
        if tumour.any() else (float("nan"), float("nan")),
    }
    metrics = {
        "checkpoint": str(checkpoint), "model_id": predictor.model_id, "fold": fold,
        "fold_role": role, "dataset": cfg.data.dataset,
        "split": {"test_fold": fold, "slices": len(records),
                  "patients": len(set(patients.tolist())), "source": index.info.get("split")},
        "classification": {**cls, "confusion_matrix": cm.tolist(), "classes": classes},
        "segmentation": seg, "confidence_intervals_95": ci, "tta": tta,
        "backend": predictor.backend,
        "per_image": [{"id": r.id, "patient": r.patient, "image": str(r.image),
                       "true": classes[t], "predicted": classes[p], "dice": float(d),
                       "has_tumour": bool(h), "tumour_pixels": int(m.sum())}
                      for r, t, p, d, h, m in zip(records, labels, preds, dice, tumour,
                                                  true_masks, strict=True)],
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def image(i: int) -> np.ndarray:  # re-read for pictures: evaluation keeps no pixels
        return load_record(records[i])[0]

    if all(r.position is not None for r in records):  # slices of volumes (LGG)
        from tumorscope.volumes import volume_metrics, write_patient_volumes

        metrics["volumes"] = volume_metrics(records, pred_masks, true_masks)
        metrics["volumes"]["files"] = write_patient_volumes(
            records, image, pred_masks, true_masks, out / "patients")
    write_json(out / "metrics.json", metrics)
    from tumorscope.reporting.evaluation_report import render_report
    from tumorscope.reporting.plots import training_curves_png

    run_dir = Path(checkpoint).resolve().parent  # runs/<name>/model -> runs/<name>
    report = render_report(metrics, records, image, pred_masks, true_masks, labels, preds,
                           np.stack(probs), dice, classes, gallery,
                           curves=training_curves_png(run_dir))
    write_atomic(out / "report.html", lambda p: p.write_text(report, encoding="utf-8"))
    return metrics


def _macro_f1(k: int, classes: list[str]) -> Any:
    def stat(rows: np.ndarray) -> float:
        cm = confusion_matrix(rows[:, 0], rows[:, 1], k)
        return float(classification_metrics(cm, classes)["macro_f1"])  # type: ignore[arg-type]
    return stat
