"""BraTS evaluation, per case: regions (WT, TC, ET) with Dice, HD95, sensitivity and
specificity under the BraTS rules for empty masks; per label (NCR, ED, ET) precision, recall,
IoU and Dice; lesion-wise Dice and HD95 as BraTS 2023 defines them; summaries over cases with
case-level bootstrap intervals.

Empty-mask rules (BraTS): reference and prediction both empty -> Dice 1, HD95 0; exactly one
empty -> Dice 0 and HD95 = :data:`WORST_HD95` (the diagonal of a 240x240x155 mm volume).
No value is ever NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

WORST_HD95 = 373.13
"""HD95 for a region found in exactly one of reference and prediction (BraTS)."""
WORST_LESION_HD95 = 374.0
"""HD95 of a missed or spurious lesion in the lesion-wise score (BraTS 2023)."""
REGION_LABELS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
LABEL_NAMES = {1: "NCR", 2: "ED", 3: "ET"}


def dice(pred: np.ndarray, true: np.ndarray) -> float:
    """Dice of two boolean masks; 1 when both are empty."""
    total = int(pred.sum()) + int(true.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(pred, true).sum()) / total


def crop_to_union(*masks: np.ndarray, pad: int = 1) -> tuple[np.ndarray, ...]:
    """The masks cut to the bounding box of their union plus ``pad`` voxels: distances and
    components come out the same, computed on far fewer voxels."""
    union = np.logical_or.reduce([m.astype(bool) for m in masks])
    if not union.any():
        return masks
    box = tuple(slice(max(int(i.min()) - pad, 0), int(i.max()) + pad + 1)
                for i in np.nonzero(union))
    return tuple(m[box] for m in masks)


def hd95(pred: np.ndarray, true: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
         worst: float = WORST_HD95) -> float:
    """95th-percentile symmetric Hausdorff distance in mm (MONAI), with the BraTS rules for
    empty masks."""
    if not pred.any() and not true.any():
        return 0.0
    if not pred.any() or not true.any():
        return worst
    import warnings

    from monai.metrics import compute_hausdorff_distance

    pred, true = crop_to_union(pred, true)
    with warnings.catch_warnings():  # MONAI's own internal deprecation notice
        warnings.simplefilter("ignore", FutureWarning)
        value = compute_hausdorff_distance(pred[None, None], true[None, None],
                                           include_background=True, percentile=95,
                                           spacing=[float(s) for s in spacing])
    return float(value.reshape(-1)[0])


def _rate(numerator: int, denominator: int, empty: float) -> float:
    return empty if denominator == 0 else numerator / denominator


def region_scores(pred: np.ndarray, true: np.ndarray, spacing: Sequence[float]
                  ) -> dict[str, dict[str, float]]:
    """Internal label maps (0-3) -> per region Dice, HD95, sensitivity, specificity."""
    out: dict[str, dict[str, float]] = {}
    for region, members in REGION_LABELS.items():
        p, t = np.isin(pred, members), np.isin(true, members)
        tp = int(np.logical_and(p, t).sum())
        negatives = int(t.size - t.sum())
        tn = int(np.logical_and(~p, ~t).sum())
        out[region] = {"dice": dice(p, t), "hd95": hd95(p, t, spacing),
                       "sensitivity": _rate(tp, int(t.sum()), 1.0 if not p.any() else 0.0),
                       "specificity": _rate(tn, negatives, 1.0)}
    return out


def label_scores(pred: np.ndarray, true: np.ndarray) -> dict[str, dict[str, float]]:
    """Per label (NCR, ED, ET): precision, recall, IoU and Dice, as the original project
    reported them. A label absent from both scores 1 everywhere; predicted but absent from
    the reference: recall 1, precision 0; present but never predicted: precision 1 (nothing
    predicted wrongly), recall 0."""
    out: dict[str, dict[str, float]] = {}
    for label, name in LABEL_NAMES.items():
        p, t = pred == label, true == label
        tp, n_pred, n_true = int(np.logical_and(p, t).sum()), int(p.sum()), int(t.sum())
        union = n_pred + n_true - tp
        out[name] = {"precision": _rate(tp, n_pred, 1.0), "recall": _rate(tp, n_true, 1.0),
                     "iou": _rate(tp, union, 1.0), "dice": dice(p, t)}
    return out


def lesion_scores(pred: np.ndarray, true: np.ndarray, spacing: Sequence[float],
                  dilation: int = 3, min_voxels: int = 50) -> dict[str, float]:
    """Lesion-wise Dice and HD95 of one region, as BraTS 2023 (glioma) computes them.

    Reference lesions are 26-connected components; components closer than ``dilation``
    voxels form one lesion (the reference is dilated only to group them). Each reference
    lesion is scored against the union of the predicted components that touch its dilated
    extent; a missed lesion scores Dice 0 and HD95 374, and so does each predicted component
    touching no reference lesion. Lesions and spurious components smaller than
    ``min_voxels`` are ignored. Scores are averaged over matched + missed + spurious lesions.
    """
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(3, 3)
    true_b, pred_b = crop_to_union(true.astype(bool), pred.astype(bool), pad=dilation + 1)
    dilated = ndimage.binary_dilation(true_b, structure, iterations=dilation) \
        if dilation > 0 and true_b.any() else true_b
    groups, n_groups = ndimage.label(dilated, structure)
    components, _ = ndimage.label(pred_b, structure)
    dices: list[float] = []
    hds: list[float] = []
    matched: set[int] = set()
    missed = 0
    for group in range(1, n_groups + 1):
        extent = groups == group
        lesion = extent & true_b
        if int(lesion.sum()) < min_voxels:
            continue
        hits = set(np.unique(components[extent]).tolist()) - {0}
        matched |= hits
        if not hits:
            missed += 1
            dices.append(0.0)
            hds.append(WORST_LESION_HD95)
            continue
        found = np.isin(components, sorted(hits))
        dices.append(dice(found, lesion))
        hds.append(hd95(found, lesion, spacing, WORST_LESION_HD95))
    sizes = np.bincount(components.ravel())
    spurious = sum(1 for c in range(1, sizes.size)
                   if c not in matched and sizes[c] >= min_voxels)
    count = len(dices) + spurious
    if count == 0:  # nothing to find and nothing found
        return {"lesion_dice": 1.0, "lesion_hd95": 0.0, "lesions": 0, "missed": 0,
                "spurious": 0}
    return {"lesion_dice": float(sum(dices) / count),
            "lesion_hd95": float((sum(hds) + WORST_LESION_HD95 * spurious) / count),
            "lesions": len(dices), "missed": missed, "spurious": spurious}


def case_scores(pred: np.ndarray, true: np.ndarray, spacing: Sequence[float],
                lesion_wise: bool = True) -> dict[str, object]:
    """Everything above for one case (internal label maps of the same shape)."""
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference {true.shape}")
    regions = region_scores(pred, true, spacing)
    if lesion_wise:
        for region, members in REGION_LABELS.items():
            regions[region].update(lesion_scores(np.isin(pred, members),
                                                 np.isin(true, members), spacing))
    return {"regions": regions, "labels": label_scores(pred, true)}


def summarise(per_case: Mapping[str, Mapping[str, float]], seed: int = 0,
              n_resamples: int = 1000) -> dict[str, dict[str, float]]:
    """``{case: {metric: value}}`` -> per metric mean, median, std and a 95% case-level
    bootstrap interval of the mean."""
    from tumorscope.metrics import bootstrap_ci

    metrics = sorted({m for scores in per_case.values() for m in scores})
    out: dict[str, dict[str, float]] = {}
    for metric in metrics:
        values = np.array([scores[metric] for scores in per_case.values() if metric in scores],
                          dtype=float)
        low, high = bootstrap_ci(values, np.mean, n_resamples=n_resamples, seed=seed) \
            if values.size > 1 else (float(values.mean()), float(values.mean()))
        out[metric] = {"mean": float(values.mean()), "median": float(np.median(values)),
                       "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                       "ci_low": float(low), "ci_high": float(high), "cases": int(values.size)}
    return out
