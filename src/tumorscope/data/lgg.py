"""LGG FLAIR segmentation (Buda et al.; TCGA-LGG): ``kaggle_3m/<case>/<case>_<n>.tif`` with
``<case>_<n>_mask.tif`` (FLAIR abnormality), 3 channels (pre-contrast, FLAIR, post-contrast),
slices ordered by ``<n>`` numerically, clinical data in ``data.csv`` (``;``-separated).

The class label of a slice is whether it shows abnormality ("no tumour" / "tumour"), so the
joint model's classification head is a slice-level detector.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from tumorscope.data.records import DatasetIndex, Record
from tumorscope.data.registry import register_dataset
from tumorscope.errors import ScanReadError

CLASSES = ["no tumour", "tumour"]
_SLICE = re.compile(r"^(?P<case>.+)_(?P<n>\d+)$")


def _case_root(root: Path) -> Path:
    return root / "kaggle_3m" if (root / "kaggle_3m").is_dir() else root


def _mask_has_tumour(path: Path) -> bool:
    import tifffile

    try:
        return bool(np.asarray(tifffile.imread(path)).any())
    except Exception as err:  # tifffile raises various errors on corrupt files
        raise ScanReadError(path, f"not a readable mask TIFF ({err})") from None


def read_clinical(path: Path) -> dict[str, dict[str, str]]:
    """``data.csv`` rows keyed by TCGA patient id (e.g. TCGA_CS_4941)."""
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        return {row["Patient"]: row for row in csv.DictReader(f, delimiter=";")}


@register_dataset("lgg")
def load_lgg(root: Path) -> DatasetIndex:
    """Index every slice; masks are read once to know which slices show tumour."""
    cases_dir = _case_root(root)
    if not cases_dir.is_dir():
        raise ScanReadError(root, "LGG folder not found (expected kaggle_3m/<case>/...)")
    cases = sorted(p for p in cases_dir.iterdir() if p.is_dir())
    if not cases:
        raise ScanReadError(cases_dir, "no case folders")
    clinical = read_clinical(cases_dir / "data.csv")
    records = []
    for case in cases:
        slices = []
        for image in case.glob("*.tif"):
            match = _SLICE.match(image.stem)
            if image.stem.endswith("_mask") or not match:
                continue
            slices.append((int(match["n"]), image))
        for n, image in sorted(slices):  # numeric order: _2 before _10
            mask = image.with_name(f"{image.stem}_mask.tif")
            if not mask.is_file():
                raise ScanReadError(mask, f"mask missing for slice {image.name}")
            records.append(Record(id=image.stem, image=image, mask=mask,
                                  label=int(_mask_has_tumour(mask)), patient=case.name,
                                  position=n))
    if not records:
        raise ScanReadError(cases_dir, "no <case>_<n>.tif slices found")
    return DatasetIndex("lgg", root, list(CLASSES), records,
                        {"layout": "kaggle_3m", "split": "computed (by patient, stratified by "
                         "whether the patient has tumour slices)", "clinical": clinical})

