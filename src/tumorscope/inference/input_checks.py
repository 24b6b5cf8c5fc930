"""Cheap checks that an image looks like a grayscale MRI slice at all, run on the raw pixels
before the network: a colour photograph, a document (bright background), a nearly blank
frame, or an image with no dark background around the head. Each failed check is one reason
in the prediction's out-of-distribution verdict."""

from __future__ import annotations

import numpy as np

COLOUR_SPREAD = 0.06  # mean |channel - gray| / range above which an RGB image is colour
DARK = 0.12  # intensity (after min-max) below which a pixel is background
MIN_DARK_SHARE = 0.03  # MRI slices have dark background around the head
BORDER_BRIGHT = 0.45  # median border intensity of documents and photographs
MIN_CONTENT_SHARE = 0.01  # share of pixels brighter than background


def unlike_mri(array: np.ndarray) -> list[str]:
    """Reasons (possibly none) why a raw ``(C, H, W)`` image does not look like MRI."""
    pixels = np.asarray(array, dtype=np.float32)
    lo, hi = float(pixels.min()), float(pixels.max())
    if hi - lo < 1e-8:
        return ["the image is constant"]
    scaled = (pixels - lo) / (hi - lo)
    reasons = []
    if scaled.shape[0] >= 3:
        rgb = scaled[:3]
        spread = float(np.abs(rgb - rgb.mean(axis=0, keepdims=True)).mean())
        if spread > COLOUR_SPREAD:
            reasons.append("a colour image (MRI slices are grayscale)")
    gray = scaled.mean(axis=0)
    h, w = gray.shape
    ring = max(1, min(h, w) // 20)
    border = np.concatenate([gray[:ring].ravel(), gray[-ring:].ravel(), gray[:, :ring].ravel(),
                             gray[:, -ring:].ravel()])
    if float(np.median(border)) > BORDER_BRIGHT:
        reasons.append("a bright background (a document, a photograph or an inverted image?)")
    elif float((gray < DARK).mean()) < MIN_DARK_SHARE:
        reasons.append("no dark background around the head")
    if float((gray > DARK).mean()) < MIN_CONTENT_SHARE:
        reasons.append("nearly blank")
    return reasons
