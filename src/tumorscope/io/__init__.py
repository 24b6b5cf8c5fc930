"""Read any scan with one call: ``read_scan(path) -> Scan``."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path, PurePath

import numpy as np

from tumorscope.errors import ScanReadError, UnsupportedFormatError
from tumorscope.io.dicom import read_dicom
from tumorscope.io.images import read_pillow, read_tiff
from tumorscope.io.matlab import read_figshare_mat
from tumorscope.io.nifti import read_nifti
from tumorscope.io.scan import DEFAULT_MAX_ELEMENTS, Scan, Source, stack_modalities

SUPPORTED = {
    ".png": read_pillow, ".jpg": read_pillow, ".jpeg": read_pillow, ".bmp": read_pillow,
    ".tif": read_tiff, ".tiff": read_tiff,
    ".mat": read_figshare_mat,
    ".dcm": read_dicom, ".dicom": read_dicom,
    ".nii": read_nifti, ".nii.gz": read_nifti,
}


def scan_suffix(path: PurePath) -> str:
    """Lower-case suffix, treating ``.nii.gz`` as one suffix."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


Reader = Callable[[Source, "str | Path", int], Scan]


def _reader_for(name: PurePath, head: bytes) -> Reader:
    suffix = scan_suffix(name)
    if suffix in SUPPORTED:
        return SUPPORTED[suffix]
    if head[128:132] == b"DICM":  # no/unknown suffix: sniff the DICOM preamble
        return read_dicom
    kinds = ", ".join(sorted(SUPPORTED))
    raise UnsupportedFormatError(str(name), f"unsupported file type {suffix or '(no suffix)'!r}; "
                        f"tumorscope reads {kinds} and DICOM files without a suffix")


def validate_pixels(scan: Scan) -> Scan:
    """Refuse empty images and non-finite pixels; return the scan with float32-safe pixels."""
    if scan.array.size == 0 or min(scan.array.shape) == 0:
        raise ScanReadError(scan.path, f"image has zero size (shape {scan.array.shape})")
    if np.iscomplexobj(scan.array):
        raise ScanReadError(scan.path, "image has complex-valued pixels (expected magnitudes)")
    if np.issubdtype(scan.array.dtype, np.floating) and not np.isfinite(scan.array).all():
        bad = int((~np.isfinite(scan.array)).sum())
        raise ScanReadError(scan.path, f"image contains {bad} NaN or infinite pixel values")
    if scan.mask is not None and scan.mask.shape != scan.spatial_shape:
        raise ScanReadError(scan.path, f"mask shape {scan.mask.shape} differs from image "
                            f"shape {scan.spatial_shape}")
    return scan


def read_scan(path: str | Path, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Scan:
    """Read a PNG/JPEG/TIFF, figshare ``.mat``, DICOM or NIfTI file into a :class:`Scan`.

    Raises :class:`~tumorscope.errors.ScanReadError` naming the file and the problem for
    missing, unsupported, corrupt, empty, oversized or non-finite inputs.
    """
    path = Path(path)
    if not path.exists():
        raise ScanReadError(path, "file not found")
    if path.is_dir():
        raise ScanReadError(path, "is a directory, expected a scan file")
    if path.stat().st_size == 0:
        raise ScanReadError(path, "file is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(132)
    return validate_pixels(_reader_for(path, head)(path, path, max_elements))


def read_scan_bytes(data: bytes, filename: str,
                    max_elements: int = DEFAULT_MAX_ELEMENTS) -> Scan:
    """Read an in-memory file (an upload) without touching the disk.

    ``filename`` only chooses the reader and names the file in errors; it is never used as a
    path (only its last component is kept).
    """
    name = PurePath(PurePath(filename.replace("\\", "/")).name or "upload")
    if not data:
        raise ScanReadError(str(name), "file is empty (0 bytes)")
    scan = _reader_for(name, data[:132])(io.BytesIO(data), str(name), max_elements)
    scan.path = Path(name.name)
    return validate_pixels(scan)


def read_mask(path: str | Path, expected_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read a binary mask image (any non-zero pixel is tumour) and check its shape."""
    scan = read_scan(path)
    mask = scan.array.max(axis=0) > 0
    if expected_shape is not None and mask.shape != tuple(expected_shape):
        raise ScanReadError(path, f"mask shape {mask.shape} differs from its image shape "
                            f"{tuple(expected_shape)}")
    return mask


__all__ = ["SUPPORTED", "Scan", "read_mask", "read_scan", "read_scan_bytes", "scan_suffix",
           "stack_modalities", "validate_pixels"]
