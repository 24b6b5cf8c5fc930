"""How a slice of any shape becomes the square a 2D model takes, and how its mask goes back.

Every training slice here is square (figshare 512 px, LGG 256 px, BraTS padded to a square),
while images from elsewhere often are not: a screenshot on a 16:9 canvas, a slice cropped to
the head, a landscape export. Squashing them into a square ("stretch", the first models')
distorts the anatomy the model learned. "square around the head" keeps the aspect ratio:

- a square image is used as it is (so a model trained on square slices sees the same input);
- otherwise the window is a square as wide as the short side, moved along the long side to
  centre the head, and widened (background padding) only as far as needed for the head to
  take ``HEAD_SHARE`` of it, about its share in the training slices. Background beyond
  that along the long side is left out, so a head on a wide canvas is not shrunk, and a
  slice cropped tight to the head gets back a margin around it.

"around the head" goes further, as nnU-Net crops every case to its non-zero region: every
image, square or not, is cut to a square centred on the head whose side makes the head's
longer extent ``HEAD_SHARE`` of it, so a zoomed-out head and one filling its frame look
alike. A model must be trained with it (``model.framing``): it also enlarges the small head
sections near the vertex and the skull base.

A :class:`Frame` records the window, so the model's mask is pasted back where it belongs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import cv2
import numpy as np

Framing = Literal["stretch", "square around the head", "around the head"]
STRETCH: Final = "stretch"
HEAD_SQUARE: Final = "square around the head"
HEAD_CROP: Final = "around the head"
FRAMINGS: tuple[Framing, ...] = (STRETCH, HEAD_SQUARE, HEAD_CROP)
DESCRIPTIONS: dict[Framing, str] = {  # for model cards
    STRETCH: "squashed into a square",
    HEAD_SQUARE: "framed as a square around the head (aspect ratio kept)",
    HEAD_CROP: "cut to a square around the head, the head at 85% of its side (aspect ratio kept)"}
CONTENT = 0.1  # intensity (min-max scaled) above which a pixel is part of the head
MIN_LINE = 0.02  # share of a row or column above CONTENT for it to cross the head
HEAD_SHARE = 0.85  # the head's extent over the side: median 0.90 figshare, 0.82 LGG, 0.79 BraTS


@dataclass(frozen=True)
class Frame:
    """A window on an ``(height, width)`` image: rows ``top .. top + rows`` and columns
    ``left .. left + cols``; the parts outside the image are background padding."""

    height: int
    width: int
    top: int
    left: int
    rows: int
    cols: int

    def crop(self, array: np.ndarray) -> np.ndarray:
        """``(..., height, width)`` -> ``(..., rows, cols)``; zeros where the window leaves
        the image (the background of a [0, 1] image or a mask); the array itself when the
        window is the whole image."""
        if (self.top, self.left, self.rows, self.cols) == (0, 0, self.height, self.width):
            return array
        out = np.zeros((*array.shape[:-2], self.rows, self.cols), array.dtype)
        r0, c0 = max(self.top, 0), max(self.left, 0)
        r1 = min(self.top + self.rows, self.height)
        c1 = min(self.left + self.cols, self.width)
        out[..., r0 - self.top:r1 - self.top, c0 - self.left:c1 - self.left] = \
            array[..., r0:r1, c0:c1]
        return out

    def paste(self, plane: np.ndarray) -> np.ndarray:
        """A model-size ``(S, S)`` float map -> ``(height, width)``: resized to the window
        (bilinear), its part inside the image kept, zeros elsewhere."""
        window = cv2.resize(np.ascontiguousarray(plane, dtype=np.float32),
                            (self.cols, self.rows), interpolation=cv2.INTER_LINEAR)
        whole = Frame(self.rows, self.cols, -self.top, -self.left, self.height, self.width)
        return whole.crop(window)


def head_extent(image: np.ndarray, axis: int) -> tuple[int, int] | None:
    """First and last index along ``axis`` (0 rows, 1 columns) of an ``(H, W)`` [0, 1]
    image whose line crosses the head; None when nothing stands out from the background."""
    lines = (image > CONTENT).mean(axis=1 - axis)
    inside = np.flatnonzero(lines > MIN_LINE)
    return None if inside.size == 0 else (int(inside[0]), int(inside[-1]))


def frame_of(image: np.ndarray, framing: str) -> Frame:
    """The window of an ``(H, W)`` or ``(C, H, W)`` image in [0, 1] under ``framing``."""
    h, w = image.shape[-2:]
    if framing not in FRAMINGS:
        raise ValueError(f"unknown framing {framing!r} (one of {', '.join(FRAMINGS)})")
    if framing != HEAD_CROP and (framing == STRETCH or h == w):
        return Frame(h, w, 0, 0, h, w)  # no head search on the common path
    gray = image.mean(axis=0) if image.ndim == 3 else image
    if framing == HEAD_CROP:
        return _around_head(gray)
    long_axis, short, long = (0, w, h) if h > w else (1, h, w)
    extent = head_extent(gray, long_axis)
    if extent is None:  # nothing stands out from the background: padded to a square
        side, start = long, 0
    else:
        first, last = extent
        side = max(short, int(np.ceil((last - first + 1) / HEAD_SHARE)))
        if side <= long:  # centred on the head, inside the image
            start = int(np.clip(round((first + last + 1) / 2 - side / 2), 0, long - side))
        else:  # padded on both ends of the long side too
            start = -((side - long) // 2)
    pad = -((side - short) // 2)  # the short side, centred
    if long_axis == 0:
        return Frame(h, w, start, pad, side, side)
    return Frame(h, w, pad, start, side, side)


def _around_head(gray: np.ndarray) -> Frame:
    """The "around the head" window of an ``(H, W)`` [0, 1] image (padded to a square when
    nothing stands out from the background)."""
    h, w = gray.shape
    rows, cols = head_extent(gray, 0), head_extent(gray, 1)
    if rows is None or cols is None:
        side = max(h, w)
        return Frame(h, w, -((side - h) // 2), -((side - w) // 2), side, side)
    longest = max(rows[1] - rows[0], cols[1] - cols[0]) + 1
    side = int(np.ceil(longest / HEAD_SHARE))
    top = round((rows[0] + rows[1] + 1) / 2 - side / 2)
    left = round((cols[0] + cols[1] + 1) / 2 - side / 2)
    return Frame(h, w, top, left, side, side)
