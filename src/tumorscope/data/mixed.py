"""``mri-mix``: tumour types and tumour-free slices from every dataset on disk, so one model
learns "meningioma", "glioma", "pituitary" and "no tumour" across sequences and planes.

- figshare (T1-CE; axial, coronal, sagittal): its three tumour types, its shipped folds;
- LGG (pre-contrast T1, FLAIR, post-contrast T1, axial): abnormal slices are gliomas with
  their FLAIR mask, the others "no tumour"; each slice contributes one of its three
  sequences, cycling with the slice number, so every sequence is seen without tripling the set;
- BraTS (t1, t1ce, t2, flair; three planes, ``brats-slices``): gliomas with the whole-tumour
  mask, and slices away from the tumour as "no tumour".

Folds are patient-level everywhere and the same ones the single-dataset models use (LGG and
BraTS: ``patient_folds`` with 5 folds, seed 42), so no patient held out by one shipped model
trains another. ``Record.source`` names the dataset, for per-dataset tables and
leave-one-dataset-out runs (``data.sources``). Missing sub-folders are skipped.

``mri-mix-mirror`` is the same collection plus ``figshare-mirror``: pseudo-healthy copies of
the figshare slices whose tumour lies on one side of a left-right symmetric head, labelled
"no tumour" (``transforms/pseudo_healthy.py``), in their patient's fold. Finding them reads
every figshare slice once (about 30 ms each).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import cast

from tumorscope.data.records import DatasetIndex, Record
from tumorscope.data.registry import load_index, register_dataset
from tumorscope.data.splits import patient_folds
from tumorscope.errors import ScanReadError
from tumorscope.progress import track

CLASSES = ["meningioma", "glioma", "pituitary", "no tumour"]
GLIOMA, NO_TUMOUR = 1, 3
FOLDS, SEED = 5, 42
SOURCES = ("figshare", "lgg", "brats")


def _figshare(root: Path) -> list[Record]:
    index = load_index("figshare", root)
    return [replace(r, id=f"figshare/{r.id}", source="figshare") for r in index.records]


def _detection_source(name: str, dataset: str, root: Path, channels: int) -> list[Record]:
    """Records of a tumour / no-tumour dataset as gliomas or "no tumour", with its folds."""
    index = load_index(dataset, root)
    fold_of = patient_folds(index.records, FOLDS, SEED)
    out = []
    for r in index.records:
        channel = None if channels == 1 else (r.position or 0) % channels
        out.append(replace(r, id=f"{name}/{r.id}", label=GLIOMA if r.label else NO_TUMOUR,
                           fold=fold_of[r.patient], channel=channel, source=name))
    return out


@register_dataset("mri-mix")
def load_mix(root: Path) -> DatasetIndex:
    """Index ``root/figshare``, ``root/lgg`` and ``root/brats`` (those present)."""
    records: list[Record] = []
    found = []
    if (root / "figshare").is_dir():
        records += _figshare(root / "figshare")
        found.append("figshare")
    if (root / "lgg").is_dir():
        records += _detection_source("lgg", "lgg", root / "lgg", channels=3)
        found.append("lgg")
    if (root / "brats").is_dir():
        records += _detection_source("brats", "brats-slices", root / "brats", channels=1)
        found.append("brats")
    if not records:
        raise ScanReadError(root, "none of figshare/, lgg/, brats/ found in the data folder")
    return DatasetIndex("mri-mix", root, list(CLASSES), records,
                        {"split": "figshare shipped folds; LGG and BraTS by patient (5 folds, "
                         "seed 42)", "sources": found})


def _mirrored(records: list[Record]) -> list[Record]:
    """Pseudo-healthy "no tumour" records of the figshare slices that qualify for mirroring."""
    from tumorscope.data.slices import load_record
    from tumorscope.transforms.pseudo_healthy import plan_mirror

    figshare = [r for r in records if r.source == "figshare"]
    out = []
    for r in track(figshare, "finding figshare slices to mirror", total=len(figshare)):
        if plan_mirror(*load_record(r)).eligible:
            out.append(replace(r, id=f"figshare-mirror/{r.id.removeprefix('figshare/')}",
                               label=NO_TUMOUR, source="figshare-mirror", synthesis="mirror"))
    return out


@register_dataset("mri-mix-mirror")
def load_mix_mirror(root: Path) -> DatasetIndex:
    """``mri-mix`` plus pseudo-healthy figshare slices (source ``figshare-mirror``)."""
    index = load_mix(root)
    extra = _mirrored(index.records)
    found = [str(s) for s in cast(list[object], index.info["sources"])]
    sources = [*found, "figshare-mirror"] if extra else found
    return DatasetIndex("mri-mix-mirror", root, index.classes, index.records + extra,
                        {**index.info, "sources": sources,
                         "pseudo-healthy": f"{len(extra)} mirrored figshare slices"})
