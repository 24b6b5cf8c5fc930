"""Classification and segmentation metrics, in NumPy, each tested against hand-computed cases.

Conventions: Dice/IoU of two empty masks is 1 (nothing to find, nothing found); precision of a
class never predicted is 0 (as scikit-learn's ``zero_division=0``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """``cm[t, p]`` counts samples of true class t predicted as p."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    return cm


def classification_metrics(cm: np.ndarray, classes: Sequence[str]) -> dict[str, object]:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support from a confusion matrix."""
    tp = np.diag(cm).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    actual = cm.sum(axis=1).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    total = cm.sum()
    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                        "f1": float(f1[i]), "support": int(actual[i])}
                 for i, name in enumerate(classes)}
    return {"accuracy": float(tp.sum() / total) if total else 0.0,
            "macro_f1": float(f1.mean()) if len(f1) else 0.0,
            "per_class": per_class}


def dice_iou(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two binary masks (1.0 each when both are empty)."""
    pred, true = np.asarray(pred, bool), np.asarray(true, bool)
    inter = np.logical_and(pred, true).sum()
    total = pred.sum() + true.sum()
    if total == 0:
        return 1.0, 1.0
    union = total - inter
    return float(2 * inter / total), float(inter / union)


def segmentation_metrics(preds: Sequence[np.ndarray],
                         trues: Sequence[np.ndarray]) -> dict[str, float]:
    """Dice and IoU: mean per image (all images, and tumour images only) and pooled."""
    if len(preds) != len(trues):
        raise ValueError("preds and trues differ in length")
    per = np.array([dice_iou(p, t) for p, t in zip(preds, trues, strict=True)]).reshape(-1, 2)
    has_tumour = np.array([np.asarray(t, bool).any() for t in trues], dtype=bool)
    inter = sum(float(np.logical_and(np.asarray(p, bool), np.asarray(t, bool)).sum())
                for p, t in zip(preds, trues, strict=True))
    psum = sum(float(np.asarray(p, bool).sum()) for p in preds)
    tsum = sum(float(np.asarray(t, bool).sum()) for t in trues)
    pooled_dice = 2 * inter / (psum + tsum) if psum + tsum else 1.0
    pooled_iou = inter / (psum + tsum - inter) if psum + tsum else 1.0

    def mean(values: np.ndarray) -> float:
        return float(values.mean()) if values.size else float("nan")

    return {"dice_mean": mean(per[:, 0]), "iou_mean": mean(per[:, 1]),
            "dice_mean_tumour": mean(per[has_tumour, 0]),
            "iou_mean_tumour": mean(per[has_tumour, 1]),
            "dice_pooled": float(pooled_dice), "iou_pooled": float(pooled_iou),
            "images": len(preds), "tumour_images": int(has_tumour.sum())}


def per_image_dice(preds: Sequence[np.ndarray], trues: Sequence[np.ndarray]) -> np.ndarray:
    """Dice of each image pair."""
    return np.array([dice_iou(p, t)[0] for p, t in zip(preds, trues, strict=True)])


def bootstrap_ci(values: np.ndarray, statistic: Callable[[np.ndarray], float],
                 n_resamples: int = 1000, level: float = 0.95, seed: int = 0,
                 groups: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over rows of ``values``; with ``groups``
    (patient ids) whole groups are resampled, as slices of one patient are not independent.
    Resamples where the statistic is undefined (NaN, e.g. AUROC with one class) are left out."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values)
    if groups is None:
        index_sets = [np.array([i]) for i in range(len(values))]
    else:
        groups = np.asarray(groups)
        index_sets = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    stats = []
    for _ in range(n_resamples):
        pick = rng.integers(0, len(index_sets), len(index_sets))
        rows = np.concatenate([index_sets[i] for i in pick])
        stats.append(statistic(values[rows]))
    alpha = (1 - level) / 2
    defined = np.asarray(stats, dtype=float)
    defined = defined[np.isfinite(defined)]  # e.g. an AUROC of a resample with one class only
    if defined.size == 0:
        return float("nan"), float("nan")
    return float(np.quantile(defined, alpha)), float(np.quantile(defined, 1 - alpha))


def volume_dice(patients: Sequence[str], preds: Sequence[np.ndarray],
                trues: Sequence[np.ndarray]) -> dict[str, float]:
    """Dice of each patient's stacked slices (one volume per patient, as Buda et al. report).

    A patient with no tumour, none predicted, scores 1.
    """
    sums: dict[str, list[float]] = {}
    for patient, p, t in zip(patients, preds, trues, strict=True):
        p, t = np.asarray(p, bool), np.asarray(t, bool)
        acc = sums.setdefault(patient, [0.0, 0.0])
        acc[0] += float(np.logical_and(p, t).sum())
        acc[1] += float(p.sum() + t.sum())
    return {patient: (2 * inter / total if total else 1.0)
            for patient, (inter, total) in sums.items()}


def detection_rates(preds: Sequence[np.ndarray], trues: Sequence[np.ndarray]) -> dict[str, float]:
    """Slice-level tumour detection: a slice is positive when its mask is non-empty."""
    p = np.array([np.asarray(m, bool).any() for m in preds])
    t = np.array([np.asarray(m, bool).any() for m in trues])
    tp, tn = int((p & t).sum()), int((~p & ~t).sum())
    fp, fn = int((p & ~t).sum()), int((~p & t).sum())
    return {"sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
            "specificity": tn / (tn + fp) if tn + fp else float("nan"),
            "tp": tp, "tn": tn, "fp": fp, "fn": fn}


def per_patient_dice_ci(per_patient: Mapping[str, float], n_resamples: int = 1000
                        ) -> tuple[float, float]:
    """95% bootstrap interval (over patients) of the mean per-patient volume Dice."""
    values = np.array(list(per_patient.values()), dtype=float)
    return bootstrap_ci(values, np.mean, n_resamples)
