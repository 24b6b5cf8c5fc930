"""Pseudo-healthy slices: a one-sided tumour replaced by the mirrored healthy hemisphere.

figshare has no tumour-free slices, so a model trained on it with other datasets' normal
slices can learn "looks like figshare" as "tumour". Mirroring gives the "no tumour" class
negatives in figshare's own look (scanner, contrast, skull, field of view): the tumour and a
margin around it are replaced, with a feathered edge, by the pixels at the mirror position
across the head's left-right axis. A slice qualifies only when the head is left-right
symmetric about a vertical axis (axial and coronal slices; sagittal ones are not) and the
tumour, with its margin, lies wholly on one side of that axis.

Mass effect (a shifted midline, a compressed ventricle) outside the margin stays, so these
are approximations of a healthy slice; see docs/trust.md for what they were measured to do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

WORK_SIZE = 128  # the axis is searched on a downsampled copy
MIN_SYMMETRY = 0.5  # smoothed slice vs its mirror, tumour excluded (most sagittal: below)
MARGIN = 0.25  # the replaced region: the tumour dilated by this share of its diameter


@dataclass(frozen=True)
class MirrorPlan:
    """Where to mirror a slice: the axis column (full resolution), how symmetric the slice
    is about it, and whether the tumour lies wholly on one side."""

    axis: float
    symmetry: float
    one_sided: bool

    @property
    def eligible(self) -> bool:
        return self.one_sided and self.symmetry >= MIN_SYMMETRY


def _gray(pixels: np.ndarray) -> np.ndarray:
    """``(H, W)`` float mean over channels of a ``(C, H, W)`` or ``(H, W)`` array."""
    return (pixels.mean(axis=0) if pixels.ndim == 3 else pixels).astype(np.float32)


def _region(mask: np.ndarray) -> np.ndarray:
    """The tumour with its margin (bool, same shape)."""
    diameter = 2.0 * np.sqrt(mask.sum() / np.pi)
    radius = max(2.0, MARGIN * diameter)
    return np.asarray(ndimage.distance_transform_edt(~mask) <= radius)


def _reflect(image: np.ndarray, axis: float) -> np.ndarray:
    """``image`` mirrored about the column ``axis`` (linear interpolation, edge values)."""
    width = image.shape[-1]
    source = 2.0 * axis - np.arange(width, dtype=np.float64)
    left = np.clip(np.floor(source).astype(int), 0, width - 1)
    right = np.clip(left + 1, 0, width - 1)
    frac = np.clip(source - np.floor(source), 0.0, 1.0).astype(np.float32)
    return image[..., left] * (1 - frac) + image[..., right] * frac


def _symmetry(image: np.ndarray, keep: np.ndarray, axis: float) -> float:
    """Correlation of ``image`` with its mirror about ``axis`` over pixels kept both ways."""
    both = keep & (_reflect(keep.astype(np.float32), axis) > 0.5)
    if both.sum() < 50:
        return -1.0
    return float(np.corrcoef(image[both], _reflect(image, axis)[both])[0, 1])


def plan_mirror(pixels: np.ndarray, mask: np.ndarray) -> MirrorPlan:
    """The best left-right mirror axis of a slice and whether its tumour can be mirrored away.

    The axis maximises the correlation between the slice and its mirror image, over head
    pixels outside the tumour region and its mirror, searched within the middle half of the
    head's width on a ``WORK_SIZE`` copy.
    """
    gray = _gray(pixels)
    h, w = gray.shape
    if not mask.any():
        return MirrorPlan(axis=w / 2, symmetry=0.0, one_sided=False)
    scale = WORK_SIZE / max(h, w)
    small = ndimage.gaussian_filter(ndimage.zoom(gray, scale, order=1), 1.5)
    region = _region(mask)
    head = small > (small.max() * 0.1)
    cols = np.flatnonzero(head.any(axis=0))
    if cols.size < 4:
        return MirrorPlan(axis=w / 2, symmetry=0.0, one_sided=False)
    keep = head & ~(ndimage.zoom(region.astype(np.float32), scale, order=0) > 0)

    def score(axis: float) -> float:
        return _symmetry(small, keep, float(axis))

    centre, half = (cols[0] + cols[-1]) / 2, (cols[-1] - cols[0]) / 4
    coarse = max(np.arange(centre - half, centre + half + 1.0, 2.0), key=score)
    best = float(max(np.arange(coarse - 1.5, coarse + 1.75, 0.5), key=score))
    axis = (best + 0.5) / scale - 0.5
    tumour_cols = np.flatnonzero(region.any(axis=0))
    one_sided = bool(tumour_cols[-1] < axis or tumour_cols[0] > axis)
    best_r = score(best)
    return MirrorPlan(axis=float(axis), symmetry=max(best_r, 0.0), one_sided=one_sided)


def mirror_healthy(pixels: np.ndarray, mask: np.ndarray,
                   plan: MirrorPlan | None = None) -> np.ndarray:
    """``pixels`` (``(C, H, W)``) with the tumour region replaced by its mirror image, the
    edge feathered over a few pixels; same dtype. Raises ValueError for a slice that does not
    qualify (see :func:`plan_mirror`)."""
    plan = plan or plan_mirror(pixels, mask)
    if not plan.eligible:
        raise ValueError(f"slice does not qualify for mirroring (symmetry {plan.symmetry:.2f},"
                         f" one-sided {plan.one_sided})")
    region = _region(mask).astype(np.float32)
    feather = max(1.0, 0.01 * mask.shape[-1])
    weight = np.clip(ndimage.gaussian_filter(region, feather) * 2.0, 0.0, 1.0)
    source = pixels.astype(np.float32)
    out = source * (1 - weight) + _reflect(source, plan.axis) * weight
    if np.issubdtype(pixels.dtype, np.integer):
        info = np.iinfo(pixels.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(pixels.dtype)
