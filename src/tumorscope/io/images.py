"""PNG / JPEG / TIFF readers (8- or 16-bit, grayscale or multi-channel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from tumorscope.errors import ScanReadError
from tumorscope.io.scan import Scan

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def _channels_first(pixels: np.ndarray) -> np.ndarray:
    """(H, W) -> (1, H, W); (H, W, C) -> (C, H, W)."""
    if pixels.ndim == 2:
        return pixels[None]
    if pixels.ndim == 3:
        return np.moveaxis(pixels, -1, 0)
    raise ValueError(f"unexpected image array of shape {pixels.shape}")


def read_pillow(path: Path) -> Scan:
    """Read PNG/JPEG/BMP with Pillow; 16-bit PNGs keep their full range."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            dpi = img.info.get("dpi")
            if mode in ("P", "LA", "PA", "CMYK", "YCbCr", "1"):
                img = img.convert("RGBA" if "A" in mode else ("L" if mode == "1" else "RGB"))
            pixels = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ScanReadError(path, f"not a readable image ({err})") from None
    if pixels.ndim == 3 and pixels.shape[-1] == 4:  # drop alpha: it is not a modality
        pixels = pixels[..., :3]
    spacing = None
    if dpi and all(d > 1 for d in dpi):
        spacing = (25.4 / float(dpi[1]), 25.4 / float(dpi[0]))
    names = ("gray",) if pixels.ndim == 2 else tuple(f"c{i}" for i in range(pixels.shape[-1]))
    return Scan(_channels_first(pixels), spacing, path, "image", names, meta={"mode": mode})


def read_tiff(path: Path) -> Scan:
    """Read a TIFF with tifffile (any bit depth, JPEG/deflate compressed via imagecodecs)."""
    import tifffile

    try:
        pixels = tifffile.imread(path)
    except Exception as err:  # tifffile raises many types for corrupt files
        try:  # Pillow copes with a few TIFF flavours tifffile rejects
            scan = read_pillow(path)
            scan.format = "tiff"
            return scan
        except ScanReadError:
            raise ScanReadError(path, f"not a readable TIFF ({err})") from None
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[0] < pixels.shape[-1] and pixels.shape[0] <= 4:
        pixels = np.moveaxis(pixels, 0, -1)  # planar (C, H, W) TIFF -> (H, W, C)
    if pixels.ndim not in (2, 3):
        raise ScanReadError(path, f"TIFF with {pixels.ndim} dimensions is not a 2D image")
    names = ("gray",) if pixels.ndim == 2 else tuple(f"c{i}" for i in range(pixels.shape[-1]))
    return Scan(_channels_first(pixels), None, path, "tiff", names)
