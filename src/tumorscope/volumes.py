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
from tumorscope.metrics import detection_rates, volume_dice
from tumorscope.reporting.gif import write_gif
from tumorscope.reporting.overlay import overlay


def volume_metrics(records: Sequence[Record], preds: Sequence[np.ndarray],
                   trues: Sequence[np.ndarray]) -> dict[str, Any]:
    """Mean Dice over patient volumes, each patient's Dice, and slice detection rates."""
    per_patient = volume_dice([r.patient for r in records], preds, trues)
    return {"dice_mean_per_patient": float(np.mean(list(per_patient.values()))),
            "patients": len(per_patient), "per_patient": per_patient,
            "detection": detection_rates(preds, trues)}


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
