"""BraTS volumes as a 2D slice dataset: axial, coronal and sagittal slices of each modality,
labelled "tumour" (with the whole-tumour mask) or "no tumour" from the segmentation.

Slices are exported once into a cache folder as 8-bit PNGs in display orientation (superior or
anterior up, radiological left-right, padded to a square), the way public 2D collections ship
them, with a ``meta.csv`` naming case, modality, plane and position. Slices touching the
tumour by less than ``min_tumour_fraction`` of the brain are left out (neither clean
negatives nor visible tumours). The export is written to a temporary folder and renamed when
complete, so an interrupted run never leaves a half-written dataset.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tumorscope.data.records import DatasetIndex, Record
from tumorscope.data.registry import register_dataset
from tumorscope.errors import ScanReadError
from tumorscope.io.brats import EXTENSIONS, MODALITIES, BratsCase, find_case_files, read_case

CLASSES = ["no tumour", "tumour"]
PLANES = ("axial", "coronal", "sagittal")
EXPORT_FORMAT = "tumorscope-brats-slices/1"


@dataclass(frozen=True)
class SliceExport:
    """What is exported per case: ``per_plane`` evenly spaced slices through the brain in
    each plane, the modality cycling from slice to slice."""

    per_plane: int = 24
    min_brain_fraction: float = 0.15  # of the plane's largest brain section
    min_tumour_fraction: float = 0.01  # of the slice's brain area, to count as tumour
    margin: int = 8  # voxels kept around the brain
    planes: tuple[str, ...] = PLANES
    modality: str | None = None  # one modality for every slice; None: cycling

    def key(self, root: Path) -> str:
        """Cache key; fields at their defaults added after the first release are left out,
        so existing exports keep their key."""
        fields = asdict(self)
        for name, default in (("planes", PLANES), ("modality", None)):
            if fields[name] == default:
                del fields[name]
        text = json.dumps({"root": str(root.resolve()), **fields, "format": EXPORT_FORMAT})
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def canonical(case: BratsCase) -> tuple[np.ndarray, np.ndarray]:
    """Image ``(C, X, Y, Z)`` and whole-tumour mask reoriented to RAS+."""
    import nibabel as nib

    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(case.affine),
                                           nib.orientations.axcodes2ornt("RAS"))
    image = np.stack([nib.orientations.apply_orientation(c, ornt) for c in case.image])
    labels = case.labels if case.labels is not None else np.zeros(case.shape, np.uint8)
    return image, nib.orientations.apply_orientation(labels > 0, ornt).astype(bool)


def display(section: np.ndarray) -> np.ndarray:
    """A RAS plane ``(first axis, second axis)`` -> rows top-down along the second axis
    (superior or anterior up), columns reversed (radiological), padded to a square."""
    out = section.T[::-1, ::-1]
    h, w = out.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    return np.pad(out, ((top, side - h - top), (left, side - w - left)))


def brain_box(brain: np.ndarray, margin: int) -> tuple[slice, ...]:
    """The brain's bounding box plus ``margin`` voxels (the head fills the frame, as in
    public 2D collections, instead of a small brain in a large empty field)."""
    box = []
    for axis in range(brain.ndim):
        hits = np.flatnonzero(brain.any(axis=tuple(a for a in range(brain.ndim) if a != axis)))
        if hits.size == 0:
            return tuple(slice(None) for _ in range(brain.ndim))
        box.append(slice(max(int(hits[0]) - margin, 0), int(hits[-1]) + margin + 1))
    return tuple(box)


def to_uint8(volume: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """0.5-99.5th percentile of the brain -> 0-255."""
    values = volume[brain]
    if values.size == 0:
        return np.zeros(volume.shape, np.uint8)
    lo, hi = np.percentile(values, [0.5, 99.5])
    scaled = (volume - lo) / max(float(hi - lo), 1e-6)
    return (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8)


def _sections(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    return display(np.take(volume, index, axis=axis))


def export_case(case: BratsCase, out: Path, settings: SliceExport) -> list[dict[str, object]]:
    """Write one case's slices into ``out/images`` and ``out/masks``; their meta rows."""
    from PIL import Image

    image, tumour = canonical(case)
    brain = image.max(axis=0) > 0
    box = brain_box(brain, settings.margin)
    channels_box = (slice(None), *box)
    image, tumour, brain = image[channels_box], tumour[box], brain[box]
    scaled = [to_uint8(channel, brain) for channel in image]
    rows: list[dict[str, object]] = []
    for p, plane in enumerate(settings.planes):
        axis = 2 - PLANES.index(plane)  # axial: z, coronal: y, sagittal: x
        other = tuple(a for a in range(3) if a != axis)
        area = brain.sum(axis=other)
        inside = np.flatnonzero(area >= settings.min_brain_fraction * area.max())
        if inside.size == 0:
            continue
        picks = np.unique(np.linspace(inside[0], inside[-1], settings.per_plane).round())
        for i, index in enumerate(picks.astype(int)):
            brain_px = int(np.take(brain, index, axis=axis).sum())
            tumour_px = int(np.take(tumour, index, axis=axis).sum())
            if 0 < tumour_px < settings.min_tumour_fraction * brain_px:
                continue
            modality = settings.modality or MODALITIES[(i + p) % len(MODALITIES)]
            slice_id = f"{case.case_id}_{plane}_{index:03d}_{modality}"
            pixels = _sections(scaled[MODALITIES.index(modality)], axis, index)
            mask = _sections(tumour, axis, index)
            Image.fromarray(np.ascontiguousarray(pixels)).save(out / "images" / f"{slice_id}.png")
            Image.fromarray(np.ascontiguousarray(mask.astype(np.uint8) * 255)).save(
                out / "masks" / f"{slice_id}.png")
            rows.append({"id": slice_id, "case": case.case_id, "modality": modality,
                         "plane": plane, "index": int(index), "tumour": int(tumour_px > 0),
                         "tumour_pixels": tumour_px})
    return rows


def export_slices(root: Path, out: Path, settings: SliceExport = SliceExport()) -> Path:
    """Export every labelled case under ``root`` into ``out`` (skipped when complete)."""
    if (out / "meta.csv").is_file():
        return out
    folders = sorted(p for p in root.iterdir() if p.is_dir() and any(
        f.name.lower().endswith(EXTENSIONS) for f in p.iterdir()))
    out.parent.mkdir(parents=True, exist_ok=True)
    # a folder of this process's own: two processes exporting at once must not share one
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        return _export_into(folders, tmp, out, root, settings)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _export_into(folders: list[Path], tmp: Path, out: Path, root: Path,
                 settings: SliceExport) -> Path:
    """Export ``folders`` into ``tmp``, then rename it to ``out`` unless another process
    completed ``out`` meanwhile."""
    from tumorscope.progress import track

    (tmp / "images").mkdir()
    (tmp / "masks").mkdir()
    rows: list[dict[str, object]] = []
    for folder in track(folders, "BraTS slices"):
        if "seg" not in find_case_files(folder)[2]:
            continue
        rows += export_case(read_case(folder), tmp, settings)
    if not rows:
        raise ScanReadError(root, "no BraTS case folder with a segmentation to slice")
    with (tmp / "meta.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (tmp / "export.json").write_text(json.dumps({"format": EXPORT_FORMAT, "source": str(root),
                                                 **asdict(settings)}, indent=2))
    if (out / "meta.csv").is_file():  # another process finished first: keep its export
        return out
    shutil.rmtree(out, ignore_errors=True)
    try:
        os.replace(tmp, out)
    except OSError:
        if not (out / "meta.csv").is_file():
            raise
    return out


def exported(root: Path, settings: SliceExport = SliceExport()) -> Path:
    """The slice export of ``root``: ``root`` itself when it is one, else the cached one
    (created on first use under ``locations.cache_dir()``)."""
    from tumorscope.locations import cache_dir

    if (root / "meta.csv").is_file():
        return root
    if not root.is_dir():
        raise ScanReadError(root, "BraTS folder not found")
    out = cache_dir() / f"brats-slices-{settings.key(root)}"
    out.parent.mkdir(parents=True, exist_ok=True)
    return export_slices(root, out, settings)


@register_dataset("brats-slices")
def load_brats_slices(root: Path) -> DatasetIndex:
    """2D slices of BraTS cases, "no tumour" / "tumour", one patient per case. Slices of
    three planes do not stack into one volume, so records carry no ``position``."""
    return index_export(root, "brats-slices", SliceExport())


def axial_export(modality: str) -> SliceExport:
    """Axial slices of one modality, every brain slice but thin ends (the original ResNet50
    tumour-detection data: BraTS FLAIR slices labelled from the segmentation)."""
    return SliceExport(per_plane=160, planes=("axial",), modality=modality)


def _register_axial(modality: str) -> None:
    @register_dataset(f"brats-axial-{modality}")
    def load(root: Path) -> DatasetIndex:
        return index_export(root, f"brats-axial-{modality}", axial_export(modality))

    load.__doc__ = f"Axial {modality} slices of BraTS cases, tumour / no tumour, by case."


for _modality in MODALITIES:
    _register_axial(_modality)


def index_export(root: Path, name: str, settings: SliceExport) -> DatasetIndex:
    """The records of a slice export (made on first use)."""
    folder = exported(root, settings)
    records = []
    with (folder / "meta.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            records.append(Record(id=row["id"], image=folder / "images" / f"{row['id']}.png",
                                  mask=folder / "masks" / f"{row['id']}.png",
                                  label=int(row["tumour"]), patient=row["case"]))
    if not records:
        raise ScanReadError(folder / "meta.csv", "no rows")
    return DatasetIndex(name, root, list(CLASSES), records,
                        {"split": "computed (by case)", "export": str(folder)})
