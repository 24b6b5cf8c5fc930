"""Pictures of a BraTS segmentation: orthogonal views (axial, coronal, sagittal through the
tumour centre) and a GIF through the axial slices, regions coloured over one modality
(oedema green, non-enhancing core blue, enhancing tumour red, as BraTS figures do)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tumorscope.io.writers import write_atomic
from tumorscope.reporting.gif import write_gif

LABEL_COLOURS = {1: (60, 110, 255), 2: (40, 200, 80), 3: (235, 50, 50)}  # NCR, ED, ET
ALPHA = 0.45


def _gray(volume: np.ndarray) -> np.ndarray:
    """A modality -> uint8 with 0.5-99.5 percentile windowing (inside the brain)."""
    inside = volume[volume != 0]
    if inside.size == 0:
        return np.zeros(volume.shape, np.uint8)
    low, high = np.percentile(inside, [0.5, 99.5])
    gray = (np.clip((volume - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)
    gray[volume == 0] = 0  # outside the brain stays black
    return gray


def _paint(gray: np.ndarray, labels: np.ndarray) -> np.ndarray:
    rgb = np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)
    for label, colour in LABEL_COLOURS.items():
        where = labels == label
        rgb[where] = (1 - ALPHA) * rgb[where] + ALPHA * np.array(colour, np.float32)
    return rgb.round().astype(np.uint8)


def _display(plane: np.ndarray) -> np.ndarray:
    """A plane of a RAS-ish volume, rotated so anterior/superior is up."""
    return np.ascontiguousarray(np.rot90(plane))


def tumour_centre(labels: np.ndarray) -> tuple[int, int, int]:
    """Centre of the tumour's bounding box (the volume's centre when there is none)."""
    where = np.argwhere(labels > 0)
    if where.size == 0:
        return tuple(int(n // 2) for n in labels.shape)  # type: ignore[return-value]
    return tuple(int((lo + hi) // 2) for lo, hi in zip(where.min(0), where.max(0),
                                                        strict=True))  # type: ignore[return-value]


def orthogonal_views(volume: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """One RGB image: axial | coronal | sagittal planes through the tumour centre."""
    x, y, z = tumour_centre(labels)
    gray = _gray(volume)
    planes = [_paint(gray[:, :, z], labels[:, :, z]), _paint(gray[:, y, :], labels[:, y, :]),
              _paint(gray[x, :, :], labels[x, :, :])]
    shown = [_display(p) for p in planes]
    height = max(p.shape[0] for p in shown)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0))) for p in shown]
    return np.concatenate(padded, axis=1)


def write_orthogonal_png(path: Path, volume: np.ndarray, labels: np.ndarray) -> Path:
    """The orthogonal views as a PNG, atomically."""
    from PIL import Image

    image = Image.fromarray(orthogonal_views(volume, labels))
    return write_atomic(path, lambda p: image.save(p, format="PNG"))


def write_axial_gif(path: Path, volume: np.ndarray, labels: np.ndarray, step: int = 2) -> Path:
    """Every ``step``-th axial slice with the regions coloured."""
    gray = _gray(volume)
    frames = [_display(_paint(gray[:, :, z], labels[:, :, z]))
              for z in range(0, volume.shape[2], step)]
    return write_gif(path, frames)


def display_grid(volume: np.ndarray, labels: np.ndarray, step: int = 2
                 ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """A modality (uint8, windowed) and the labels, cropped to the brain and subsampled by
    ``step``, for a viewer that draws slices itself; and the crop's origin in the input."""
    brain = np.nonzero((volume != 0) | (labels > 0))
    if brain[0].size == 0:
        origin = (0, 0, 0)
        box = tuple(slice(0, n, step) for n in volume.shape)
    else:
        origin = tuple(int(i.min()) for i in brain)  # type: ignore[assignment]
        box = tuple(slice(int(i.min()), int(i.max()) + 1, step) for i in brain)
    return _gray(volume)[box], labels[box].astype(np.uint8), origin
