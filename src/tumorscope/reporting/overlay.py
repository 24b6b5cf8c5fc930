"""Draw tumour outlines over a slice: predicted in yellow, ground truth in green."""

from __future__ import annotations

import cv2
import numpy as np

from tumorscope.transforms.slice2d import scale_intensity, to_channels

PRED_COLOUR = (255, 215, 0)
TRUE_COLOUR = (0, 200, 80)


def display_rgb(array: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` pixels -> ``(H, W, 3)`` uint8 for display (gray, or first 3 channels)."""
    if array.shape[0] >= 3:
        rgb = np.moveaxis(scale_intensity(array[:3]), 0, -1)
    else:
        gray = scale_intensity(to_channels(array, 1))[0]
        rgb = np.repeat(gray[..., None], 3, axis=-1)
    return (rgb * 255).round().astype(np.uint8)


def _outline(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int],
             thickness: int) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, colour, thickness)


def overlay(array: np.ndarray, pred: np.ndarray | None = None, true: np.ndarray | None = None,
            fill_alpha: float = 0.25) -> np.ndarray:
    """RGB image with the predicted mask lightly filled and outlined, and the true outline."""
    canvas = display_rgb(array).copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 256))
    if pred is not None and pred.any():
        tint = canvas.astype(np.float32)
        tint[pred.astype(bool)] = (1 - fill_alpha) * tint[pred.astype(bool)] + \
            fill_alpha * np.array(PRED_COLOUR, np.float32)
        canvas = tint.round().astype(np.uint8)
        _outline(canvas, pred, PRED_COLOUR, thickness)
    if true is not None and true.any():
        _outline(canvas, true, TRUE_COLOUR, thickness)
    return canvas
