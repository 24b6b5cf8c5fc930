"""Slice stacks: per-patient volumes assembled from 2D slice predictions (LGG), stacked by
slice position, scored as volumes, written as NIfTI masks and GIFs with true/predicted
outlines. (Real 3D volumes, e.g. BraTS, are evaluated as volumes, not here.)"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tumorscope.data.records import Record
from tumorscope.evaluation.result import DetectionRates, SliceStackResult
from tumorscope.io.writers import write_mask_nifti
from tumorscope.metrics import detection_rates, per_patient_dice_ci, volume_dice
from tumorscope.reporting.gif import write_gif
from tumorscope.reporting.overlay import overlay


def volume_metrics(records: Sequence[Record], preds: Sequence[np.ndarray],
                   trues: Sequence[np.ndarray]) -> SliceStackResult:
    """Mean Dice over patient volumes (with its 95% bootstrap CI over patients), each
    patient's Dice, and slice detection rates."""
    per_patient = volume_dice([r.patient for r in records], preds, trues)
    return SliceStackResult(dice_mean_per_patient=float(np.mean(list(per_patient.values()))),
                            patients=len(per_patient), per_patient=per_patient,
                            detection=DetectionRates.model_validate(
                                detection_rates(preds, trues)),
                            dice_mean_per_patient_ci=per_patient_dice_ci(per_patient))


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
