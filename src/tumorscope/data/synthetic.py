"""Synthetic slices drawn by ``tumorscope synthesize`` (pix2pix): ``images/<id>.png``,
``masks/<id>.png``, ``manifest.csv`` and ``classes.json``.

Each slice's patient is ``synthetic-<source_patient>``: slices conditioned on one real
patient stay together when the synthetic set is split. No shipped folds.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tumorscope.data.records import DatasetIndex, Record
from tumorscope.data.registry import register_dataset
from tumorscope.errors import ScanReadError

MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("id", "label", "class", "source_id", "source_patient")


def read_classes(root: Path) -> list[str]:
    """The class names in ``classes.json`` (a JSON list of strings)."""
    path = root / "classes.json"
    if not path.is_file():
        raise ScanReadError(path, "classes.json not found: is this a tumorscope synthesize "
                            "output (images/, masks/, manifest.csv, classes.json)?")
    try:
        classes = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ScanReadError(path, f"not valid JSON ({err.msg})") from None
    if not isinstance(classes, list) or not classes or \
            not all(isinstance(c, str) for c in classes):
        raise ScanReadError(path, "must be a non-empty list of class names")
    return classes


def _record(root: Path, row: dict[str, str], line: int, classes: list[str]) -> Record:
    meta = root / MANIFEST
    try:
        label = int(row["label"])
    except ValueError:
        raise ScanReadError(meta, f"line {line}: label must be an integer") from None
    if not 0 <= label < len(classes):
        raise ScanReadError(meta, f"line {line}: label {label} not in 0..{len(classes) - 1}")
    return Record(id=row["id"], image=root / "images" / f"{row['id']}.png",
                  mask=root / "masks" / f"{row['id']}.png", label=label,
                  patient=f"synthetic-{row['source_patient']}", source=None)


@register_dataset("synthetic")
def load_synthetic(root: Path) -> DatasetIndex:
    """Index a synthetic dataset folder (labels in manifest.csv are 0-based)."""
    meta = root / MANIFEST
    if not meta.is_file():
        raise ScanReadError(meta, "manifest.csv not found: is this a tumorscope synthesize "
                            "output?")
    classes = read_classes(root)
    with meta.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(MANIFEST_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise ScanReadError(meta, f"missing columns {sorted(missing)}")
        records = [_record(root, row, line, classes) for line, row in enumerate(reader, 2)]
    if not records:
        raise ScanReadError(meta, "no rows")
    return DatasetIndex("synthetic", root, classes, records,
                        {"layout": "synthetic (pix2pix)",
                         "split": "computed (grouped by the conditioning real patient)"})
