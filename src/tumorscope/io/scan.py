"""The in-memory form of any scan: a channels-first array plus geometry and metadata."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

Source = Path | BinaryIO
"""Where a reader reads from: a file on disk or an in-memory upload."""

DEFAULT_MAX_ELEMENTS = 1 << 24
"""Largest array (channels x pixels/voxels) a reader will decode: 16 Mi elements (a 4096x4096
gray slice, a 256x256x256 volume; the server's default too), so a huge image is refused
before it is decoded."""


class DecodeBudget:
    """Elements decoded at once across threads (e.g. all requests of a server).

    Inside :meth:`held`, every reader reserves its image's element count, read from the
    header, *before* the pixels are allocated, and waits while other decodes hold the budget;
    the reservation lasts until the ``with`` block ends.
    """

    def __init__(self, capacity: int, wait_s: float = 120.0) -> None:
        self.capacity, self.wait_s = capacity, wait_s
        self.used = 0
        self._cond = threading.Condition()

    def _acquire(self, name: str | Path, elements: int) -> None:
        from tumorscope.errors import BusyError, ImageTooLargeError

        if elements > self.capacity:  # would wait for ever
            raise ImageTooLargeError(name, f"needs {elements:,} elements decoded at once, above "
                                     f"the server's decode budget of {self.capacity:,}")
        with self._cond:
            if not self._cond.wait_for(lambda: self.used + elements <= self.capacity,
                                       self.wait_s):
                raise BusyError(name, "too many large images are being decoded; try again")
            self.used += elements

    def _release(self, elements: int) -> None:
        with self._cond:
            self.used -= elements
            self._cond.notify_all()

    @contextmanager
    def held(self) -> Iterator[None]:
        """Decodes in this block (this thread or context) draw on the budget."""
        hold = _Hold(self)
        token = _active_hold.set(hold)
        try:
            yield
        finally:
            _active_hold.reset(token)
            self._release(hold.elements)


@dataclass
class _Hold:
    """One block's reservation: the sum over the files decoded in the block (a file checked
    twice, e.g. header then image, counts once, at its largest)."""

    budget: DecodeBudget
    elements: int = 0
    per_file: dict[str, int] = field(default_factory=dict)

    def need(self, name: str | Path, elements: int) -> None:
        key = str(name)
        total = self.elements - self.per_file.get(key, 0) + max(self.per_file.get(key, 0),
                                                                 elements)
        self.per_file[key] = max(self.per_file.get(key, 0), elements)
        if total <= self.elements:
            return
        # give back, then take the whole amount: two holds never wait on each other
        self.budget._release(self.elements)
        self.elements = 0
        self.budget._acquire(name, total)
        self.elements = total


_active_hold: ContextVar[_Hold | None] = ContextVar("tumorscope_decode_hold", default=None)


def check_elements(name: str | Path, shape: Any, max_elements: int) -> None:
    """Refuse, before decoding, an image whose header declares more elements than allowed;
    inside :meth:`DecodeBudget.held`, wait for room in the shared budget."""
    from tumorscope.errors import ImageTooLargeError

    total = int(np.prod([int(s) for s in shape], dtype=np.float64))
    if total > max_elements:
        raise ImageTooLargeError(name, f"image of shape {tuple(shape)} ({total:,} elements) "
                                 f"exceeds the limit of {max_elements:,}; refused "
                                 "(decompression bomb?)")
    hold = _active_hold.get()
    if hold is not None:
        hold.need(name, total)


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


def shrink(scan: Scan, max_side: int) -> Scan:
    """A 2D scan whose longer side exceeds ``max_side``, area-averaged down to it (spacing
    scaled to match; ``meta["original_shape"]`` keeps the decoded size); others unchanged."""
    import cv2

    height, width = scan.array.shape[1:3]
    if scan.is_volume or max(height, width) <= max_side:
        return scan
    factor = max_side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    pixels = scan.array if scan.array.dtype in (np.uint8, np.uint16, np.float32) else \
        scan.array.astype(np.float32)
    array = np.stack([cv2.resize(channel, size, interpolation=cv2.INTER_AREA)
                      for channel in pixels])
    spacing = None if scan.spacing is None else \
        (scan.spacing[0] * height / size[1], scan.spacing[1] * width / size[0])
    mask = None if scan.mask is None else cv2.resize(
        scan.mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return Scan(array, spacing, scan.path, scan.format, scan.channel_names, None, mask,
                {**scan.meta, "original_shape": (height, width)})
