"""The evaluation report: metrics tables, confusion matrix, Dice histogram, worst cases."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tumorscope.evaluation.result import EvaluationResult, SliceStackResult, TrustResult
from tumorscope.reporting.html import img_tag, page, table
from tumorscope.reporting.overlay import overlay
from tumorscope.reporting.plots import confusion_matrix_png, histogram_png


def _png(rgb: np.ndarray) -> bytes:
    import io

    from PIL import Image

    img = Image.fromarray(rgb)
    img.thumbnail((256, 256))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def worst_cases(labels: Sequence[int], preds: Sequence[int], dice: np.ndarray,
                true_masks: Sequence[np.ndarray], n: int) -> list[int]:
    """Misclassified slices first (by confidence order of appearance), then lowest Dice."""
    tumour = np.array([m.any() for m in true_masks])
    wrong = [i for i in range(len(labels)) if labels[i] != preds[i]]
    by_dice = [int(i) for i in np.argsort(dice) if tumour[i] and int(i) not in wrong]
    picked = (wrong[: n // 2] + by_dice)[:n]
    return picked


def _volumes_section(v: SliceStackResult) -> str:
    det = v.detection
    low, high = v.dice_ci
    summary = table([["Dice per patient volume (mean)", v.dice_mean_per_patient],
                     ["95% CI (bootstrap over patients)", f"[{low:.3f}, {high:.3f}]"],
                     ["patients", v.patients],
                     ["slice detection sensitivity", det.sensitivity],
                     ["slice detection specificity", det.specificity]], ["metric", "value"])
    rows = [(p, d, f'<a href="patients/{v.files[p]["gif"]}">GIF</a> · '
             f'<a href="patients/{v.files[p]["nifti"]}">NIfTI</a>')
            for p, d in sorted(v.per_patient.items(), key=lambda kv: kv[1])]
    body = "".join(f"<tr><td>{html.escape(p)}</td><td>{d:.3f}</td><td>{links}</td></tr>"
                   for p, d, links in rows)
    return (summary + "<table><thead><tr><th>patient</th><th>volume Dice</th><th>files</th>"
            f"</tr></thead><tbody>{body}</tbody></table>")


def _interval(result: EvaluationResult, key: str) -> str:
    ci = result.ci(key)
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def _trust_section(trust: TrustResult) -> str:
    """Reliability diagram, detection at the validation threshold, per-dataset table."""
    from tumorscope.reporting.plots import reliability_png

    text = (f"<p>Temperature {trust.temperature:.3f} (fitted on validation). Expected "
            f"calibration error on this fold: {trust.ece_uncalibrated:.3f} without, "
            f"{trust.ece_calibrated:.3f} with it. Flagged as unlike the training data: "
            f"{(trust.ood_flag_rate or 0):.1%} of slices.</p>")
    rows = []
    if (d := trust.detection) is not None:
        ci = f"[{d.auroc_ci[0]:.3f}, {d.auroc_ci[1]:.3f}]" if d.auroc_ci else ""
        rows.append(["all", d.auroc, ci, d.sensitivity, d.false_alarm_rate])
    for name, r in trust.per_source.items():
        if (d := r.detection) is not None:
            ci = f"[{d.auroc_ci[0]:.3f}, {d.auroc_ci[1]:.3f}]" if d.auroc_ci else ""
            rows.append([name, d.auroc, ci, d.sensitivity, d.false_alarm_rate])
    detection = table(rows, ["slices", "tumour vs no tumour AUROC", "95% CI",
                             "tumours caught", "false alarms"]) if rows else ""
    per_source = table([[name, r.slices, r.patients, r.accuracy, r.type_accuracy or "",
                         r.dice_mean_tumour or "", r.ood_flag_rate or 0.0]
                        for name, r in trust.per_source.items()],
                       ["dataset", "slices", "patients", "accuracy", "type accuracy",
                        "Dice (tumour)", "flagged unfamiliar"]) if trust.per_source else ""
    plot = img_tag(reliability_png(trust.reliability_uncalibrated, trust.reliability,
                                   trust.ece_uncalibrated, trust.ece_calibrated),
                   "reliability diagram")
    return text + detection + per_source + plot


def render_report(metrics: EvaluationResult, records: Sequence[Any],
                  image: Callable[[int], np.ndarray],
                  pred_masks: Sequence[np.ndarray], true_masks: Sequence[np.ndarray],
                  labels: Sequence[int], preds: Sequence[int], probs: np.ndarray,
                  dice: np.ndarray, classes: list[str], gallery: int,
                  curves: bytes | None = None) -> str:
    """Build the HTML report of a 2D slice model's evaluation (a classifier has no
    segmentation rows, Dice histogram or outlines)."""
    cls, seg, split = metrics.classification, metrics.segmentation, metrics.split
    assert cls is not None  # every 2D slice model classifies
    note = (f"<p class=note>Fold {metrics.fold} ({metrics.fold_role} fold for this model): "
            f"{split.slices} slices from {split.patients} patients. Split: "
            f"{split.source}. Patients never cross folds. 95% intervals: patient-level "
            "bootstrap (500 resamples).</p>")
    rows: list[list[Any]] = [["accuracy", cls.accuracy, _interval(metrics, "accuracy")],
                              ["macro-F1", cls.macro_f1, _interval(metrics, "macro_f1")]]
    if seg is not None:
        rows += [["Dice, mean over tumour slices", seg.dice_mean_tumour,
                  _interval(metrics, "dice_mean_tumour")],
                 ["Dice, mean over all slices", seg.dice_mean, ""],
                 ["Dice, pooled", seg.dice_pooled, ""],
                 ["IoU, mean over tumour slices", seg.iou_mean_tumour, ""],
                 ["IoU, pooled", seg.iou_pooled, ""]]
    summary = table(rows, ["metric", "value", "95% CI"])
    per_class = table([[n, v.precision, v.recall, v.f1, v.support]
                       for n, v in cls.per_class.items()],
                      ["class", "precision", "recall", "F1", "slices"])
    cm_img = img_tag(confusion_matrix_png(np.array(cls.confusion_matrix), classes),
                     "confusion matrix")
    tumour = np.array([m.any() for m in true_masks])
    hist = img_tag(histogram_png(dice[tumour], "Dice per tumour slice", "Dice"), "Dice histogram")
    figures = []
    for i in worst_cases(labels, preds, dice, true_masks, gallery):
        rgb = overlay(image(i), pred_masks[i], true_masks[i])
        said = f"<br>Dice {dice[i]:.2f}" if seg is not None else ""
        caption = (f"{records[i].id} (patient {records[i].patient})<br>true {classes[labels[i]]},"
                   f" predicted {classes[preds[i]]} ({probs[i].max():.0%}){said}")
        figures.append(f"<figure>{img_tag(_png(rgb), records[i].id)}<figcaption>{caption}"
                       "</figcaption></figure>")
    legend = "<p>Outlines: <b style='color:#d4a800'>predicted</b>, " \
             "<b style='color:#00a050'>ground truth</b>.</p>"
    sections = [("Split", note), ("Summary", summary), ("Per class", per_class + cm_img),
                *([("Segmentation", hist)] if seg is not None else []),
                ("Worst cases", (legend if seg is not None else "") + "".join(figures))]
    if metrics.volumes is not None:
        sections.insert(3, ("Patient volumes", _volumes_section(metrics.volumes)))
    if metrics.trust is not None:
        sections.insert(3, ("Calibration, no tumour, unfamiliar images",
                            _trust_section(metrics.trust)))
    if curves is not None:
        sections.append(("Training curves", img_tag(curves, "training curves")))
    return page(f"tumorscope evaluation — {metrics.model_id}", sections)
