"""Per-patient volumes from slice predictions (LGG): stacked by slice position, scored as
volumes, written as NIfTI masks and GIFs with true/predicted outlines."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tumorscope.data.records import Record
from tumorscope.io.writers import write_mask_nifti
from tumorscope.metrics import bootstrap_ci, detection_rates, volume_dice
from tumorscope.reporting.gif import write_gif
from tumorscope.reporting.overlay import overlay


def volume_metrics(records: Sequence[Record], preds: Sequence[np.ndarray],
                   trues: Sequence[np.ndarray]) -> dict[str, Any]:
    """Mean Dice over patient volumes (with its 95% bootstrap CI over patients), each
    patient's Dice, and slice detection rates."""
    per_patient = volume_dice([r.patient for r in records], preds, trues)
    volumes = {"dice_mean_per_patient": float(np.mean(list(per_patient.values()))),
               "patients": len(per_patient), "per_patient": per_patient,
               "detection": detection_rates(preds, trues)}
    volumes["dice_mean_per_patient_ci"] = list(per_patient_dice_ci(volumes))
    return volumes


def per_patient_dice_ci(volumes: dict[str, Any]) -> tuple[float, float]:
    """95% CI of the mean per-patient Dice: stored by :func:`volume_metrics`, or computed the
    same way for metrics files written before it stored one."""
    if "dice_mean_per_patient_ci" in volumes:
        low, high = volumes["dice_mean_per_patient_ci"]
        return float(low), float(high)
    values = np.array(list(volumes["per_patient"].values()), dtype=float)
    return bootstrap_ci(values, np.mean, 1000)


def write_patient_volumes(records: Sequence[Record], image: Callable[[int], np.ndarray],
                          preds: Sequence[np.ndarray], trues: Sequence[np.ndarray],
                          out: Path) -> dict[str, dict[str, str]]:
    """For each patient: ``<patient>_pred.nii.gz`` (slices on the last axis, in position
    order) and ``<patient>.gif`` (every slice, true outline green, predicted yellow);
    ``image(i)`` gives the pixels of ``records[i]``."""
    by_patient: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_patient[r.patient].append(i)
    written = {}
    for patient, idx in sorted(by_patient.items()):
        idx.sort(key=lambda i: records[i].position or 0)
        volume = np.stack([preds[i] for i in idx], axis=-1)
        nii = write_mask_nifti(out / f"{patient}_pred.nii.gz", volume, None)
        frames = [overlay(image(i), preds[i], trues[i]) for i in idx]
        written[patient] = {"nifti": nii.name,
                            "gif": write_gif(out / f"{patient}.gif", frames).name}
    return written
