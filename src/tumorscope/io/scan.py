"""The in-memory form of any scan: a channels-first array plus geometry and metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

Source = Path | BinaryIO
"""Where a reader reads from: a file on disk or an in-memory upload."""

DEFAULT_MAX_ELEMENTS = 1 << 26
"""Largest array (channels x pixels/voxels) a reader will decode: 64 Mi elements (a 512x512x256
volume; the server's default too), so a huge image is refused before it is decoded."""


def check_elements(name: str | Path, shape: Any, max_elements: int) -> None:
    """Refuse, before decoding, an image whose header declares more elements than allowed."""
    from tumorscope.errors import ImageTooLargeError

    total = int(np.prod([int(s) for s in shape], dtype=np.float64))
    if total > max_elements:
        raise ImageTooLargeError(name, f"image of shape {tuple(shape)} ({total:,} elements) "
                                 f"exceeds the limit of {max_elements:,}; refused "
                                 "(decompression bomb?)")


@dataclass
class Scan:
    """A 2D slice or a 3D volume, with every channel (modality) kept.

    ``array`` is channels-first: ``(C, H, W)`` for a slice, ``(C, X, Y, Z)`` for a volume
    (NIfTI axis order, slices along the last axis). ``spacing`` is millimetres per pixel
    along each spatial axis, or ``None`` when the format does not say. ``mask`` holds an
    annotation stored in the same file (figshare ``.mat``), spatial shape only.
    """

    array: np.ndarray
    spacing: tuple[float, ...] | None = None
    path: Path | None = None
    format: str = "array"
    channel_names: tuple[str, ...] = ()
    affine: np.ndarray | None = None
    mask: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_volume(self) -> bool:
        """True for 3D volumes (``(C, X, Y, Z)``)."""
        return self.array.ndim == 4

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape without the channel axis."""
        return tuple(self.array.shape[1:])

    @property
    def num_channels(self) -> int:
        """Number of channels (modalities) in the scan."""
        return int(self.array.shape[0])

    def slice(self, index: int) -> Scan:
        """Return axial slice ``index`` (last axis) of a volume as a 2D scan."""
        if not self.is_volume:
            raise ValueError("slice() needs a 3D volume")
        depth = self.array.shape[-1]
        if not 0 <= index < depth:
            raise IndexError(f"slice {index} is outside 0..{depth - 1}")
        spacing = self.spacing[:2] if self.spacing else None
        mask = self.mask[..., index] if self.mask is not None else None
        meta = {**self.meta, "slice_index": index}
        return Scan(self.array[..., index], spacing, self.path, self.format,
                    self.channel_names, None, mask, meta)


def stack_modalities(scans: dict[str, Scan]) -> Scan:
    """Stack single-channel scans of one subject (e.g. BraTS t1/t1ce/t2/flair) into one scan.

    All inputs must share their spatial shape; the first scan's geometry is kept.
    """
    from tumorscope.errors import ScanReadError

    names = list(scans)
    first = scans[names[0]]
    for name in names[1:]:
        if scans[name].spatial_shape != first.spatial_shape:
            raise ScanReadError(scans[name].path, f"modality {name!r} has shape "
                                f"{scans[name].spatial_shape}, expected {first.spatial_shape}")
    array = np.concatenate([scans[n].array for n in names], axis=0)
    return Scan(array, first.spacing, first.path, first.format, tuple(names), first.affine,
                first.mask, dict(first.meta))
