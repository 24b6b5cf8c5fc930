"""NIfTI reader (nibabel): a 2D slice or a 3D volume, affine kept, 4D as channels."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Any

import numpy as np

from tumorscope.errors import ImageTooLargeError, ScanReadError
from tumorscope.io.scan import Scan, Source, check_elements

HEADER_BYTES = 348  # a NIfTI-1 header


def nifti_from_bytes(data: bytes, name: str, max_elements: int) -> Any:
    """Parse NIfTI from memory; gzip is inflated only after its header's size is checked
    (and, in a server, reserved in the decode budget): no decompression bombs."""
    import nibabel as nib

    if data[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
            head = gz.read(HEADER_BYTES)
            header = nib.Nifti1Header.from_fileobj(io.BytesIO(head), check=False)
            shape = header.get_data_shape()
            check_elements(name, shape, max_elements)  # before anything is inflated
            limit = int(header.get_data_offset()) + 64 * 1024 + \
                int(np.prod(shape, dtype=np.float64)) * header.get_data_dtype().itemsize
            data = head + gz.read(limit + 1 - len(head))
        if len(data) > limit:
            raise ImageTooLargeError(name, "NIfTI inflates beyond the size its header declares; "
                                     "refused as a decompression bomb")
    return nib.Nifti1Image.from_bytes(data)


def read_nifti(path: Source, name: str | Path, max_elements: int) -> Scan:
    """Read ``.nii``/``.nii.gz``; the last axis of a 4D image becomes the channel axis."""
    import nibabel as nib

    img: Any
    try:
        if isinstance(path, Path):
            img = nib.load(str(path))
        else:
            img = nifti_from_bytes(path.read(), str(name), max_elements)
        check_elements(name, img.shape, max_elements)
        data = np.asarray(img.dataobj)
    except ScanReadError:
        raise
    except Exception as err:  # nibabel raises ImageFileError, EOFError, zlib errors...
        raise ScanReadError(name, f"not a readable NIfTI file ({err})") from None
    zooms = tuple(float(z) for z in img.header.get_zooms())
    if data.ndim > 4:  # e.g. X x Y x Z x 1 x C: drop the empty axes past the third
        data = np.squeeze(data, axis=tuple(a for a in range(3, data.ndim) if data.shape[a] == 1))
    if data.ndim > 4:
        raise ScanReadError(name, f"NIfTI image has unsupported shape {data.shape} (2D, 3D, or "
                            "3D with channels)")
    if data.ndim == 3 and data.shape[2] == 1:  # a single slice stored as X x Y x 1
        data = data[:, :, 0]
    if data.ndim == 2:
        array, spacing = data[None], zooms[:2]
    elif data.ndim == 3:
        array, spacing = data[None], zooms[:3]
    elif data.ndim == 4:
        array, spacing = np.moveaxis(data, -1, 0), zooms[:3]
    else:
        raise ScanReadError(name, f"NIfTI image has unsupported shape {data.shape}")
    names = tuple(f"c{i}" for i in range(array.shape[0])) if array.shape[0] > 1 else ("mr",)
    return Scan(array, spacing, Path(name), "nifti", names, affine=np.asarray(img.affine),
                meta={"nifti_shape": tuple(data.shape)})
