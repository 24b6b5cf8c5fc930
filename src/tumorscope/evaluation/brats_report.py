"""The HTML report of a BraTS evaluation: summaries with case-level intervals, per-label
scores, a row per case, and each case's orthogonal views (prediction beside reference)."""

from __future__ import annotations

import io

import numpy as np

from tumorscope.evaluation.result import EvaluationResult
from tumorscope.reporting.html import img_tag, page, table

REGIONS = ("WT", "TC", "ET")


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def render_brats_report(metrics: EvaluationResult, views: dict[str, np.ndarray]) -> str:
    """``views``: per case an RGB image (prediction above, reference below)."""
    assert metrics.cases is not None
    summary, per_case = metrics.cases.summary, metrics.cases.per_case
    region_rows = []
    for region in REGIONS:
        row: list[object] = [region]
        for metric in ("dice", "hd95", "lesion_dice", "sensitivity", "specificity"):
            s = summary.get(f"{region}_{metric}")
            row.append("" if s is None else f"{s.mean:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}]")
        region_rows.append(row)
    label_rows = [[label, *(f"{summary[f'{label}_{m}'].mean:.3f}" if f"{label}_{m}" in summary
                            else "" for m in ("precision", "recall", "iou", "dice"))]
                  for label in ("NCR", "ED", "ET")]
    case_rows = [[case, *(scores.get(f"{r}_dice", float("nan")) for r in REGIONS),
                  *(scores.get(f"{r}_hd95", float("nan")) for r in REGIONS)]
                 for case, scores in per_case.items()]
    figures = "".join(f"<figure>{img_tag(_png(rgb), case)}<figcaption>{case}: prediction "
                      "(top), reference (bottom)</figcaption></figure>"
                      for case, rgb in views.items())
    note = ('<p class="note">Mean over cases [95% case-level bootstrap interval]. BraTS rules: '
            "a region empty in both reference and prediction scores Dice 1 and HD95 0; in "
            "exactly one, Dice 0 and HD95 373.13 mm.</p>")
    return page(f"BraTS evaluation: {metrics.model_id}, fold {metrics.fold} "
                f"({metrics.fold_role})", [
                    ("Regions", note + table(region_rows, ["region", "Dice", "HD95 mm",
                                                           "lesion-wise Dice", "sensitivity",
                                                           "specificity"])),
                    ("Labels (as the original project reported them)",
                     table(label_rows, ["label", "precision", "recall", "IoU", "Dice"])),
                    ("Cases", table(case_rows, ["case", "Dice WT", "Dice TC", "Dice ET",
                                                "HD95 WT", "HD95 TC", "HD95 ET"])),
                    ("Views through the tumour", figures)])
