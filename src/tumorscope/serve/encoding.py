"""Mask encodings for the API: PNG as base64, and run-length encoding."""

from __future__ import annotations

import base64
import io
from typing import cast

import numpy as np


def png_base64(pixels: np.ndarray) -> str:
    """A uint8 gray/RGB array as base64 PNG (no data: prefix)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG", optimize=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def rle_encode(mask: np.ndarray) -> dict[str, object]:
    """Row-major run lengths of a binary mask, starting with a (possibly empty) run of 0s.

    ``{"size": [rows, cols], "counts": [n0, n1, n0, ...], "order": "C"}``
    """
    flat = np.asarray(mask, dtype=bool).ravel(order="C")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": list(mask.shape), "counts": counts, "order": "C"}


def rle_decode(rle: dict[str, object]) -> np.ndarray:
    """Inverse of :func:`rle_encode`."""
    size = [int(s) for s in cast(list[int], rle["size"])]
    values = np.zeros(int(np.prod(size)), dtype=bool)
    pos, on = 0, False
    for n in cast(list[int], rle["counts"]):
        values[pos:pos + int(n)] = on
        pos += int(n)
        on = not on
    return values.reshape(size)
