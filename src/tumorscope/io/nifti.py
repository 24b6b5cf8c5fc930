"""NIfTI reader (nibabel): a 2D slice or a 3D volume, affine kept, 4D as channels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tumorscope.errors import ScanReadError
from tumorscope.io.scan import Scan


def read_nifti(path: Path) -> Scan:
    """Read ``.nii``/``.nii.gz``; the last axis of a 4D image becomes the channel axis."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as err:  # nibabel raises ImageFileError, EOFError, zlib errors...
        raise ScanReadError(path, f"not a readable NIfTI file ({err})") from None
    zooms = tuple(float(z) for z in img.header.get_zooms())
    data = np.squeeze(data, axis=tuple(range(3, data.ndim))) if data.ndim > 4 else data
    if data.ndim == 3 and data.shape[2] == 1:  # a single slice stored as X x Y x 1
        data = data[:, :, 0]
    if data.ndim == 2:
        array, spacing = data[None], zooms[:2]
    elif data.ndim == 3:
        array, spacing = data[None], zooms[:3]
    elif data.ndim == 4:
        array, spacing = np.moveaxis(data, -1, 0), zooms[:3]
    else:
        raise ScanReadError(path, f"NIfTI image has unsupported shape {data.shape}")
    names = tuple(f"c{i}" for i in range(array.shape[0])) if array.shape[0] > 1 else ("mr",)
    return Scan(array, spacing, path, "nifti", names, affine=np.asarray(img.affine),
                meta={"nifti_shape": tuple(data.shape)})
