"""``tumorscope predict``: class, probabilities, mask, overlay and a JSON record per file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tumorscope.errors import ScanReadError, TumorscopeError
from tumorscope.inference.predictor import Prediction, Predictor
from tumorscope.io import Scan, read_scan, scan_suffix
from tumorscope.io.writers import write_json, write_mask_nifti, write_mask_png, write_png
from tumorscope.reporting.overlay import overlay


def output_stem(path: Path) -> str:
    """File name without its (possibly double) suffix."""
    suffix = scan_suffix(path)
    return path.name[: -len(suffix)] if suffix and path.name.lower().endswith(suffix) else path.stem


def unique_stems(paths: list[Path]) -> list[str]:
    """Output names for ``paths``: the file stem, prefixed by parent folders (then numbered)
    where two inputs share a name, so no output overwrites another."""
    stems = [output_stem(p) for p in paths]
    for depth in (1, 2):
        clashing = {s for s in stems if stems.count(s) > 1}
        stems = ["_".join([*p.resolve().parent.parts[-depth:], output_stem(p)])
                 if s in clashing else s for p, s in zip(paths, stems, strict=True)]
    seen: dict[str, int] = {}
    numbered = []
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
        numbered.append(s if seen[s] == 1 else f"{s}-{seen[s]}")
    return numbered


def prepare_output_folder(out_dir: Path) -> Path:
    """Create ``out_dir`` (or check it), a one-line error if it is a file or not writable."""
    if out_dir.exists() and not out_dir.is_dir():
        raise TumorscopeError(out_dir, "--out is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TumorscopeError(out_dir, f"cannot create the output folder ({err.strerror})") \
            from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise TumorscopeError(out_dir, "the output folder is not writable")
    return out_dir


def write_outputs(scan: Scan, pred: Prediction, out_dir: Path,
                  stem: str | None = None) -> dict[str, Any]:
    """Write mask, overlay and JSON for one prediction (a classifier's: the JSON only);
    returns the JSON record."""
    assert scan.path is not None
    stem = stem or output_stem(scan.path)
    files: dict[str, str] = {}
    if pred.extra.get("segmentation", True):
        files = _mask_files(scan, pred, out_dir, stem)
    record = {"file": str(scan.path), **pred.record(), "outputs": files}
    write_json(out_dir / f"{stem}.json", record)
    return record


def _mask_files(scan: Scan, pred: Prediction, out_dir: Path, stem: str) -> dict[str, str]:
    """The mask (PNG, or NIfTI for a NIfTI input) and an overlay picture."""
    files: dict[str, str] = {}
    if scan.format == "nifti":
        mask_path = write_mask_nifti(out_dir / f"{stem}_mask.nii.gz", pred.mask, scan.affine)
    else:
        mask_path = write_mask_png(out_dir / f"{stem}_mask.png", pred.mask)
    files["mask"] = str(mask_path)
    if pred.mask.ndim == 3:  # a volume: show the slice with the most tumour
        k = int(np.argmax(pred.mask.sum(axis=(0, 1)))) if pred.mask.any() \
            else pred.mask.shape[-1] // 2
        rgb = overlay(scan.array[..., k], pred.mask[..., k])
        files["overlay_slice"] = str(k)
    else:
        rgb = overlay(scan.array, pred.mask)
    files["overlay"] = str(write_png(out_dir / f"{stem}_overlay.png", rgb))
    return files


def predict_files(predictor: Predictor, files: list[Path], out_dir: Path,
                  slice_index: int | None = None) -> list[dict[str, Any]]:
    """Read and predict every file first (a bad one stops the run before anything is
    written, the output folder included), then write each file's outputs atomically."""
    scans = [read_scan(f) for f in files]
    for scan in scans:
        if slice_index is not None and scan.is_volume:
            depth = scan.array.shape[-1]
            if not 0 <= slice_index < depth:
                raise ScanReadError(scan.path, f"--slice {slice_index} is outside 0..{depth - 1}")
    predictions = [predictor.predict_scan(scan, slice_index) for scan in scans]
    prepare_output_folder(out_dir)
    records = []
    for scan, pred, stem in zip(scans, predictions, unique_stems(list(files)), strict=True):
        if slice_index is not None and scan.is_volume:
            scan = scan.slice(slice_index)
        records.append(write_outputs(scan, pred, out_dir, stem))
    return records
