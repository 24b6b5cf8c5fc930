"""The figshare brain-tumour dataset (Cheng et al.): 3064 T1-CE slices, 233 patients.

Two layouts: the original folder of ``.mat`` files, and the compact ``images/ masks/
meta.csv`` copy whose ``fold`` column is the patient-wise split distributed with the data.
"""

from __future__ import annotations

import csv
from pathlib import Path

from tumorscope.data.records import DatasetIndex, Record
from tumorscope.data.registry import register_dataset
from tumorscope.errors import ScanReadError

CLASSES = ["meningioma", "glioma", "pituitary"]
_REQUIRED = {"id", "pid", "label", "fold"}


@register_dataset("figshare")
def load_figshare_compact(root: Path) -> DatasetIndex:
    """Index ``root/images/<id>.jpg``, ``root/masks/<id>.png`` and ``root/meta.csv``."""
    meta = root / "meta.csv"
    if not meta.is_file():
        raise ScanReadError(meta, "meta.csv not found: is this the compact figshare layout "
                            "(images/, masks/, meta.csv)?")
    records = []
    with meta.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = _REQUIRED - set(reader.fieldnames or [])
        if missing:
            raise ScanReadError(meta, f"missing columns {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                label = int(row["label"]) - 1
                fold = int(row["fold"])
            except ValueError:
                raise ScanReadError(meta, f"line {line}: label/fold must be integers") from None
            if not 0 <= label < len(CLASSES):
                raise ScanReadError(meta, f"line {line}: label {row['label']} not in 1..3")
            image = root / "images" / f"{row['id']}.jpg"
            if not image.exists():
                image = root / "images" / f"{row['id']}.png"
            mask = root / "masks" / f"{row['id']}.png"
            records.append(Record(id=row["id"], image=image, mask=mask, label=label,
                                  patient=row["pid"], fold=fold))
    if not records:
        raise ScanReadError(meta, "no rows")
    return DatasetIndex("figshare", root, list(CLASSES), records,
                        {"layout": "compact", "split": "meta.csv fold column (patient-wise)"})


@register_dataset("figshare-mat")
def load_figshare_mat(root: Path) -> DatasetIndex:
    """Index a folder of original ``<id>.mat`` slices; patient and label come from each file."""
    from tumorscope.io.matlab import read_figshare_mat

    files = sorted(root.rglob("*.mat"), key=lambda p: (len(p.stem), p.stem))
    if not files:
        raise ScanReadError(root, "no .mat files found")
    records = []
    for path in files:
        scan = read_figshare_mat(path)
        label = int(scan.meta["label"]) - 1
        if not 0 <= label < len(CLASSES):
            raise ScanReadError(path, f"label {label + 1} not in 1..3")
        records.append(Record(id=path.stem, image=path, mask=None, label=label,
                              patient=str(scan.meta["patient"])))
    return DatasetIndex("figshare-mat", root, list(CLASSES), records,
                        {"layout": "mat", "split": "computed (patient-grouped, stratified)"})
