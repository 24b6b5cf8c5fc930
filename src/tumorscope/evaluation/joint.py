"""The joint task's evaluator: classification and segmentation metrics with patient-level
bootstrap intervals, per-slice rows, per-patient slice stacks when slices have positions
(LGG), and the HTML report."""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from tumorscope.data.slices import load_record
from tumorscope.evaluation.evaluate import EvaluationJob
from tumorscope.evaluation.result import EvaluationResult, UncertaintyResult
from tumorscope.inference.joint import JointInferer
from tumorscope.inference.runtime import TimedRunner, mc_samples
from tumorscope.io.writers import write_atomic
from tumorscope.metrics import (
    bootstrap_ci,
    classification_metrics,
    confusion_matrix,
    per_image_dice,
    segmentation_metrics,
)
from tumorscope.progress import track
from tumorscope.uncertainty import auroc


def evaluate_joint(job: EvaluationJob) -> EvaluationResult:
    """Evaluate a joint model on ``job.records``; writes ``metrics.json`` and ``report.html``."""
    records, fold, batch_size = job.records, job.fold, job.batch_size
    inferer, timed = _timed(cast(JointInferer, job.predictor.inferer), batch_size)
    labels, preds, probs, pred_masks, true_masks, flagged = [], [], [], [], [], []
    spreads: list[float | None] = []
    classes = job.index.classes
    for start in track(range(0, len(records), batch_size), f"evaluating fold {fold}",
                       total=-(-len(records) // batch_size)):
        chunk = records[start:start + batch_size]
        loaded = [load_record(r) for r in chunk]
        outputs = inferer.predict_batch([a for a, _ in loaded], batch_size,
                                        sources=[r.image for r in chunk],
                                        outlines=inferer.outlines_of([r.outline for r in chunk]))
        for r, (array, mask), (p, m, distance, spread) in zip(chunk, loaded, outputs,
                                                              strict=True):
            spreads.append(spread)
            label, found = inferer.decide(p)  # the rule the API and page apply
            labels.append(r.label)
            preds.append(classes.index(label) if label in classes else int(np.argmax(p)))
            probs.append(p)
            pred_masks.append(np.zeros_like(m) if found is False else m)
            true_masks.append(mask)
            flagged.append(not inferer.verdict(array, distance)["in_distribution"])
    cm = confusion_matrix(labels, preds, len(classes))
    cls = classification_metrics(cm, classes)
    seg = segmentation_metrics(pred_masks, true_masks) if inferer.segments else None
    dice = per_image_dice(pred_masks, true_masks)
    patients = np.array([r.patient for r in records])
    correct = (np.array(labels) == np.array(preds)).astype(float)
    tumour = np.array([m.any() for m in true_masks])
    ci = {
        "accuracy": bootstrap_ci(correct, np.mean, 500, groups=patients),
        "macro_f1": bootstrap_ci(np.stack([labels, preds], 1), _macro_f1(len(classes), classes),
                                 500, groups=patients),
    }
    if inferer.segments:
        ci["dice_mean_tumour"] = (bootstrap_ci(dice[tumour], np.mean, 500,
                                               groups=patients[tumour])
                                  if tumour.any() else (float("nan"), float("nan")))
    source = job.index.info.get("split")
    metrics = {
        "checkpoint": str(job.checkpoint), "model_id": job.predictor.model_id, "fold": fold,
        "fold_role": job.role, "dataset": job.cfg.data.dataset,
        "split": {"test_fold": fold, "slices": len(records),
                  "patients": len(set(patients.tolist())),
                  "source": str(source) if source is not None else None},
        "classification": {**cls, "confusion_matrix": cm.tolist(), "classes": classes},
        "segmentation": seg, "confidence_intervals_95": ci, "tta": inferer.tta,
        "backend": job.predictor.backend,
        "timing": {"ms_per_slice": 1000 * timed.seconds / max(1, len(records)),
                   "batch_size": batch_size, "threads": timed.threads, "backend": timed.name,
                   "slices": len(records)},
        "per_image": [{"id": r.id, "patient": r.patient, "image": str(r.image),
                       "true": classes[t], "predicted": classes[p], "dice": float(d),
                       "has_tumour": bool(h), "tumour_pixels": int(m.sum()),
                       "tumour_score": inferer.tumour_probability(q)}
                      for r, t, p, d, h, m, q in zip(records, labels, preds, dice, tumour,
                                                     true_masks, probs, strict=True)],
    }
    result = EvaluationResult.model_validate(metrics)
    if spreads and all(s is not None for s in spreads):
        result.uncertainty = mc_dropout_result(np.array(spreads, float), np.stack(probs),
                                               correct, inferer)
    if job.predictor.card.calibration is not None:
        from tumorscope.evaluation.trust import SlicePredictions, trust_metrics

        cal = job.predictor.card.calibration
        result.trust = trust_metrics(
            SlicePredictions(records, np.array(labels), np.array(preds), np.stack(probs), dice,
                             tumour, np.array(flagged)),
            cal.temperature, inferer.no_tumour, cal.tumour_threshold)
    out = job.out

    def image(i: int) -> np.ndarray:  # re-read for pictures: evaluation keeps no pixels
        return load_record(records[i])[0]

    # slices of volumes (LGG), from a model that segments (a classifier's masks are empty)
    if inferer.segments and all(r.position is not None for r in records):
        from tumorscope.evaluation.slice_stacks import volume_metrics, write_patient_volumes

        result.volumes = volume_metrics(records, pred_masks, true_masks)
        result.volumes.files = write_patient_volumes(records, image, pred_masks, true_masks,
                                                     out / "patients")
    result.save(out / "metrics.json")
    from tumorscope.evaluation.report import render_report
    from tumorscope.reporting.plots import training_curves_png
    from tumorscope.training.history import read_run_metrics

    run_dir = job.checkpoint.resolve().parent  # runs/<name>/model -> runs/<name>
    report = render_report(result, records, image, pred_masks, true_masks, labels, preds,
                           np.stack(probs), dice, classes, job.gallery,
                           curves=training_curves_png(read_run_metrics(run_dir)))
    write_atomic(out / "report.html", lambda p: p.write_text(report, encoding="utf-8"))
    return result


def _timed(inferer: JointInferer, batch_size: int) -> tuple[JointInferer, TimedRunner]:
    """The same inferer on a timed runner, warmed up by one untimed batch of zeros (the first
    call pays one-off kernel selection and allocation)."""
    timed = TimedRunner(inferer.runner)
    shape = (batch_size, *inferer.input_shape(inferer.card))
    timed.runner(np.zeros(shape, np.float32))
    return JointInferer(timed, inferer.card, inferer.threshold, inferer.tta,
                        inferer.outline), timed


def mc_dropout_result(spread: np.ndarray, probs: np.ndarray, correct: np.ndarray,
                      inferer: JointInferer) -> UncertaintyResult:
    """How well MC-dropout mutual information (and, for comparison, 1 - max probability)
    ranks wrong answers above right ones."""
    wrong = correct < 0.5
    both = bool(wrong.any() and (~wrong).any())
    return UncertaintyResult(
        samples=mc_samples(inferer.runner),
        mean_mutual_information=float(spread.mean()),
        error_auroc=auroc(spread, wrong) if both else None,
        error_auroc_confidence=auroc(1 - probs.max(axis=1), wrong) if both else None)


def _macro_f1(k: int, classes: list[str]) -> Any:
    def stat(rows: np.ndarray) -> float:
        cm = confusion_matrix(rows[:, 0].tolist(), rows[:, 1].tolist(), k)
        return float(classification_metrics(cm, classes)["macro_f1"])  # type: ignore[arg-type]
    return stat
