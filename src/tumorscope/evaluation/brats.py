"""The BraTS task's evaluator: every case of the fold predicted whole and scored the BraTS
way (brats_metrics.py), a CSV row per case, the predicted segmentation of each case in its
input space and convention, and summaries with case-level bootstrap intervals."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import cast

import numpy as np

from tumorscope.brats_metrics import case_scores, summarise
from tumorscope.evaluation.brats_report import render_brats_report
from tumorscope.evaluation.evaluate import EvaluationJob
from tumorscope.evaluation.result import EvaluatedSplit, EvaluationResult
from tumorscope.inference.brats import BratsInferer
from tumorscope.io.brats import MODALITIES, read_case, write_segmentation
from tumorscope.io.writers import write_atomic
from tumorscope.progress import track
from tumorscope.reporting.regions import orthogonal_views


def flatten(scores: dict[str, object]) -> dict[str, float]:
    """``{"regions": {"WT": {"dice": ..}}, "labels": {..}}`` -> ``{"WT_dice": .., ...}``."""
    flat: dict[str, float] = {}
    for group in ("regions", "labels"):
        for name, values in cast(dict[str, dict[str, float]], scores[group]).items():
            flat.update({f"{name}_{k}": float(v) for k, v in values.items()})
    return flat


def _write_csv(path: Path, per_case: dict[str, dict[str, float]]) -> None:
    columns = sorted({k for row in per_case.values() for k in row})

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["case", *columns])
            for case, row in per_case.items():
                writer.writerow([case, *(f"{row[c]:.6g}" for c in columns)])

    write_atomic(path, write)


def evaluate_brats(job: EvaluationJob) -> EvaluationResult:
    """Evaluate a BraTS model on ``job.records`` (cases); writes metrics.json, cases.csv
    and ``predictions/<case>_pred.nii.gz``."""
    inferer = cast(BratsInferer, job.predictor.inferer)
    section = job.predictor.card.preprocessing
    per_case: dict[str, dict[str, float]] = {}
    files: dict[str, dict[str, str]] = {}
    views: dict[str, np.ndarray] = {}
    seconds = 0.0
    for record in track(job.records, f"evaluating fold {job.fold}", len(job.records)):
        case = read_case(record.image, missing=str(section.get("missing_modality", "error")),
                         label_map=section.get("label_map"))
        start = time.perf_counter()
        pred = inferer.predict_case(case)
        seconds += time.perf_counter() - start
        assert case.labels is not None  # records are labelled cases
        per_case[case.case_id] = flatten(case_scores(pred.labels, case.labels, case.spacing))
        out = write_segmentation(pred.labels, case, job.out / "predictions" /
                                 f"{case.case_id}_pred.nii.gz")
        files[case.case_id] = {"nifti": str(out.relative_to(job.out))}
        flair = case.image[MODALITIES.index("flair")]
        views[case.case_id] = np.concatenate([orthogonal_views(flair, pred.labels),
                                              orthogonal_views(flair, case.labels)], axis=0)
    _write_csv(job.out / "cases.csv", per_case)
    result = EvaluationResult.model_validate({
        "checkpoint": str(job.checkpoint), "model_id": job.predictor.model_id,
        "fold": job.fold, "fold_role": job.role, "dataset": job.cfg.data.dataset,
        "split": EvaluatedSplit(test_fold=job.fold, slices=0, patients=len(per_case),
                                source=str(job.index.info.get("split"))),
        "tta": inferer.tta, "backend": job.predictor.backend,
        "cases": {"per_case": per_case, "summary": summarise(per_case),
                  "seconds_per_case": seconds / max(len(per_case), 1), "files": files}})
    result.save(job.out / "metrics.json")
    text = render_brats_report(result, views)
    write_atomic(job.out / "report.html", lambda p: p.write_text(text, encoding="utf-8"))
    return result
