"""``tumorscope explore``: what a dataset holds before any training (the LGG project's
data-exploration step, for every registered dataset).

Writes ``summary.json`` (slices, patients, classes, slices with and without a tumour mask,
per-patient counts, the patient-level fold sizes), ``distributions.png`` (class counts,
tumour/no-tumour slices, slices per patient) and ``samples.png`` (a grid of slices with
their masks outlined, tumour slices first, one per patient).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from tumorscope.data.records import DatasetIndex, Record
from tumorscope.data.registry import load_index
from tumorscope.data.slices import load_record
from tumorscope.data.splits import assign_folds
from tumorscope.errors import TumorscopeError
from tumorscope.io import read_mask
from tumorscope.io.writers import write_atomic, write_json, write_png
from tumorscope.progress import track
from tumorscope.reporting.overlay import overlay
from tumorscope.transforms.slice2d import resize_image, resize_mask

TILE = 128


def _has_tumour(record: Record) -> bool:
    if record.mask is not None:
        return bool(read_mask(record.mask).any())
    return bool(load_record(record)[1].any())  # mask inside the image file (.mat)


def summarise(index: DatasetIndex, tumour: list[bool], folds: int, seed: int) -> dict[str, Any]:
    """Counts of one dataset: classes, tumour/no-tumour slices, per patient, per fold."""
    per_patient = Counter(r.patient for r in index.records)
    fold_of = assign_folds(index, folds, seed, "dataset")
    fold_slices = Counter(fold_of[r.patient] for r in index.records)
    fold_patients = Counter(fold_of.values())
    counts = np.array(list(per_patient.values()))
    return {
        "dataset": index.name, "root": str(index.root), "slices": len(index.records),
        "patients": len(per_patient), "classes": index.class_counts(),
        "tumour_slices": int(sum(tumour)), "no_tumour_slices": len(tumour) - int(sum(tumour)),
        "slices_per_patient": {"min": int(counts.min()), "median": float(np.median(counts)),
                               "max": int(counts.max())},
        "patients_by_slices": dict(sorted(per_patient.items())),
        "folds": {str(f): {"slices": fold_slices[f], "patients": fold_patients[f]}
                  for f in sorted(fold_patients)},
        "split_source": index.info.get("split"),
    }


def distributions_png(summary: dict[str, Any]) -> bytes:
    """Three bar charts: slices per class, with/without tumour, histogram of slices/patient."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    classes = summary["classes"]
    axes[0].bar(list(classes), list(classes.values()), color="#3a7bd5")
    axes[0].set_title("slices per class")
    axes[0].tick_params(axis="x", rotation=20)
    axes[1].bar(["tumour mask", "no tumour"],
                [summary["tumour_slices"], summary["no_tumour_slices"]],
                color=["#d4a800", "#00a050"])
    axes[1].set_title("slices with / without tumour")
    axes[2].hist(list(summary["patients_by_slices"].values()), bins=20, color="#3a7bd5")
    axes[2].set_title(f"slices per patient ({summary['patients']} patients)")
    axes[2].set_xlabel("slices")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def sample_grid(index: DatasetIndex, tumour: list[bool], n: int = 16, columns: int = 4
                ) -> np.ndarray:
    """Up to ``n`` slices (one per patient, tumour slices first) with masks outlined."""
    seen: set[str] = set()
    picked: list[Record] = []
    for want in (True, False):
        for record, has in zip(index.records, tumour, strict=True):
            if has == want and record.patient not in seen and len(picked) < n:
                seen.add(record.patient)
                picked.append(record)
    tiles = []
    for record in picked:
        pixels, mask = load_record(record)
        small = resize_image(pixels.astype(np.float32), TILE)
        tile = overlay(small, None, resize_mask(mask, TILE).astype(bool))
        tiles.append(np.pad(tile, ((2, 2), (2, 2), (0, 0)), constant_values=255))
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def explore(dataset: str, root: Path, out: Path, folds: int = 5, seed: int = 42,
            samples: int = 16) -> dict[str, Any]:
    """Index ``root`` as ``dataset`` and write the summary, charts and sample grid to ``out``."""
    if not root.exists():
        raise TumorscopeError(root, "dataset folder not found")
    index = load_index(dataset, root)
    tumour = [_has_tumour(r) for r in track(index.records, f"reading {len(index.records)} masks")]
    summary = summarise(index, tumour, folds, seed)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    png = distributions_png(summary)
    write_atomic(out / "distributions.png", lambda p: p.write_bytes(png))
    write_png(out / "samples.png", sample_grid(index, tumour, samples))
    return summary
