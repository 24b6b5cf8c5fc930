"""How far the answers of a calibrated slice model can be trusted on an evaluated fold:
expected calibration error with and without its temperature, tumour / no-tumour detection
(AUROC with a patient-level interval, sensitivity and false alarms at the validation
threshold), the out-of-distribution flag rate, and all of it per dataset (``Record.source``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tumorscope.data.records import Record
from tumorscope.evaluation.result import DetectionResult, SourceResult, TrustResult
from tumorscope.metrics import bootstrap_ci
from tumorscope.uncertainty import auroc, operating_point, reliability


@dataclass
class SlicePredictions:
    """What the evaluator collected per slice (calibrated probabilities)."""

    records: list[Record]
    labels: np.ndarray  # true class index
    preds: np.ndarray  # decided class index
    probs: np.ndarray  # (N, K) calibrated
    dice: np.ndarray  # per slice (NaN-free; 1 for empty/empty)
    tumour: np.ndarray  # bool: the slice shows tumour
    flagged: np.ndarray | None  # bool: out-of-distribution verdict


def detection(scores: np.ndarray, positive: np.ndarray, threshold: float,
              patients: np.ndarray, resamples: int = 300) -> DetectionResult | None:
    """Detection metrics, or None when the slices are all of one kind."""
    if positive.all() or not positive.any():
        return None
    rows = np.stack([scores, positive.astype(float)], 1)
    ci = bootstrap_ci(rows, lambda r: auroc(r[:, 0], r[:, 1] > 0.5), resamples,
                      groups=patients)
    return DetectionResult(auroc=auroc(scores, positive), auroc_ci=ci, threshold=threshold,
                           **operating_point(scores, positive, threshold),
                           tumour_slices=int(positive.sum()),
                           tumour_free_slices=int((~positive).sum()))


def _source_result(p: SlicePredictions, keep: np.ndarray, none: int | None,
                   threshold: float) -> SourceResult:
    patients = np.array([r.patient for r in p.records])[keep]
    labels, preds = p.labels[keep], p.preds[keep]
    tumour = labels != none if none is not None else p.tumour[keep]
    typed = tumour & (preds != none) if none is not None else tumour
    return SourceResult(
        slices=int(keep.sum()), patients=len(set(patients.tolist())),
        accuracy=float((labels == preds).mean()),
        type_accuracy=float((labels[typed] == preds[typed]).mean()) if typed.any() else None,
        dice_mean_tumour=float(p.dice[keep][p.tumour[keep]].mean())
        if p.tumour[keep].any() else None,
        detection=None if none is None else detection(
            1 - p.probs[keep][:, none], tumour, threshold, patients),
        ood_flag_rate=None if p.flagged is None else float(p.flagged[keep].mean()))


def trust_metrics(p: SlicePredictions, temperature: float, none: int | None,
                  threshold: float | None) -> TrustResult:
    """The trust section of ``metrics.json``."""
    raw = np.exp(temperature * np.log(np.clip(p.probs, 1e-12, None)))  # undo the temperature
    raw /= raw.sum(axis=1, keepdims=True)
    calibrated, uncalibrated = reliability(p.probs, p.labels), reliability(raw, p.labels)
    cut = 0.5 if threshold is None else threshold
    patients = np.array([r.patient for r in p.records])
    sources = np.array([r.source or "all" for r in p.records])
    overall = _source_result(p, np.ones(len(p.records), bool), none, cut)
    return TrustResult(
        temperature=temperature, ece_uncalibrated=uncalibrated["ece"],
        ece_calibrated=calibrated["ece"], reliability=calibrated["bins"],
        reliability_uncalibrated=uncalibrated["bins"],
        detection=None if none is None else detection(1 - p.probs[:, none], p.labels != none,
                                                      cut, patients),
        ood_flag_rate=overall.ood_flag_rate,
        per_source={s: _source_result(p, sources == s, none, cut)
                    for s in sorted(set(sources.tolist()))} if len(set(sources)) > 1 else {})
