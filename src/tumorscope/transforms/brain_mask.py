"""A fast classical 2D brain mask (skull stripping) for one slice: threshold the head, cut the
thin bridges between scalp, skull and brain by erosion, keep the central piece, grow it back.

It is crude beside 3D tools (HD-BET, SynthStrip) and needs no weights. It exists so that the
presence of skull and scalp, which differs between collections (BraTS is skull-stripped,
figshare and LGG are not), cannot identify a class: training may strip slices at random
(``augment.skull_strip``), and ``strip_skull`` gives the same view of any input.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.morphology import disk

ERODE = 0.035  # erosion radius, as a fraction of the head's equivalent radius
MIN_HEAD = 50  # pixels; a smaller head is returned as it is


def _largest(mask: np.ndarray) -> np.ndarray:
    """The largest connected piece of ``mask`` (``mask`` itself when empty)."""
    labels, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = ndi.sum(mask, labels, range(1, n + 1))
    return np.asarray(labels == 1 + int(np.argmax(sizes)))


def head_mask(image: np.ndarray) -> np.ndarray:
    """The head silhouette of an ``(H, W)`` slice in [0, 1]: smoothed Otsu threshold, closed,
    holes filled, largest piece (nothing for a constant image)."""
    if float(np.ptp(image)) < 1e-6:
        return np.zeros(image.shape, dtype=bool)
    smooth = ndi.gaussian_filter(image.astype(np.float32), sigma=max(1.0, image.shape[0] / 128))
    head = ndi.binary_closing(smooth > threshold_otsu(smooth),
                              structure=disk(max(1, image.shape[0] // 64)))
    return np.asarray(_largest(ndi.binary_fill_holes(head)), dtype=bool)


def brain_mask(image: np.ndarray) -> np.ndarray:
    """The brain of an ``(H, W)`` slice in [0, 1]: tissue inside the head, eroded apart from
    the scalp and skull, the piece that is largest and nearest the head's centre, dilated
    back and holes filled. An already skull-stripped slice keeps nearly all of itself."""
    head = head_mask(image)
    area = int(head.sum())
    if area < MIN_HEAD:
        return head
    radius = np.sqrt(area / np.pi)
    step = disk(max(1, round(ERODE * radius)))
    tissue = head & (image > 0.5 * threshold_otsu(image[head]))
    labels, n = ndi.label(ndi.binary_erosion(tissue, structure=step, iterations=2))
    if n == 0:
        return head
    centre = np.array(ndi.center_of_mass(head))
    pieces = range(1, n + 1)
    sizes = ndi.sum(tissue, labels, pieces)
    centres = np.array(ndi.center_of_mass(tissue, labels, pieces)).reshape(n, 2)
    nearness = np.clip(1.0 - np.linalg.norm(centres - centre, axis=1) / radius, 0.0, None)
    best = 1 + int(np.argmax(np.asarray(sizes) * nearness))
    grown = ndi.binary_dilation(labels == best, structure=step, iterations=2)
    return np.asarray(ndi.binary_fill_holes(grown) & head)


def strip_skull(image: np.ndarray) -> np.ndarray:
    """``image`` ``(H, W)`` or ``(H, W, C)`` in [0, 1] with everything outside the brain mask
    (found on the first channel) set to 0."""
    plane = image if image.ndim == 2 else image[..., 0]
    keep = brain_mask(plane)
    return image * (keep if image.ndim == 2 else keep[..., None]).astype(image.dtype)
