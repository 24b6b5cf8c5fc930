"""A user's own data: ``root/<class>/<image>`` with an optional ``root/masks/<class>/<image>``.

The patient is taken from the file name prefix before ``patient_separator`` (default: the
whole stem, i.e. every image its own patient), or from ``root/patients.csv`` (file,patient).
"""

from __future__ import annotations

import csv
from pathlib import Path

from tumorscope.data.records import DatasetIndex, Record
from tumorscope.data.registry import register_dataset
from tumorscope.errors import ScanReadError
from tumorscope.io import SUPPORTED, scan_suffix


@register_dataset("imagefolder")
def load_imagefolder(root: Path, patient_separator: str = "_") -> DatasetIndex:
    """Index an image folder; classes are the sub-folder names (``masks`` excluded), sorted."""
    if not root.is_dir():
        raise ScanReadError(root, "dataset folder not found")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "masks")
    if not classes:
        raise ScanReadError(root, "no class sub-folders (expected root/<class>/<image>)")
    patients = _patient_table(root / "patients.csv")
    records = []
    for label, name in enumerate(classes):
        for image in sorted((root / name).rglob("*")):
            if not image.is_file() or scan_suffix(image) not in SUPPORTED:
                continue
            rel = image.relative_to(root)
            mask = root / "masks" / rel.with_suffix(".png")
            if not mask.exists():
                mask = root / "masks" / rel
            patient = patients.get(str(rel)) or image.stem.split(patient_separator)[0]
            records.append(Record(id=str(rel.with_suffix("")), image=image,
                                  mask=mask if mask.exists() else None, label=label,
                                  patient=f"{patient}"))
    if not records:
        raise ScanReadError(root, "no readable images in the class folders")
    info: dict[str, object] = {"layout": "imagefolder",
                               "split": "computed (patient-grouped, stratified)"}
    return DatasetIndex("imagefolder", root, classes, records, info)


def _patient_table(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"file", "patient"} <= set(rows[0]):
        raise ScanReadError(path, "needs columns 'file' and 'patient'")
    return {row["file"]: row["patient"] for row in rows}
