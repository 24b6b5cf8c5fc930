"""PNG / JPEG / TIFF readers (8- or 16-bit, grayscale or multi-channel)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from tumorscope.errors import BusyError, ImageTooLargeError, ScanReadError
from tumorscope.io.scan import Scan, Source, check_elements


def _channels_first(pixels: np.ndarray) -> np.ndarray:
    """(H, W) -> (1, H, W); (H, W, C) -> (C, H, W)."""
    if pixels.ndim == 2:
        return pixels[None]
    if pixels.ndim == 3:
        return np.moveaxis(pixels, -1, 0)
    raise ValueError(f"unexpected image array of shape {pixels.shape}")


def read_pillow(path: Source, name: str | Path, max_elements: int) -> Scan:
    """Read PNG/JPEG/BMP with Pillow; 16-bit PNGs keep their full range."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            check_elements(name, (img.size[0], img.size[1], len(img.getbands())), max_elements)
            img.load()
            mode = img.mode
            dpi = img.info.get("dpi")
            if mode in ("P", "LA", "PA", "CMYK", "YCbCr", "1"):
                converted = img.convert("RGBA" if "A" in mode else ("L" if mode == "1" else "RGB"))
                pixels = np.asarray(converted)
            else:
                pixels = np.asarray(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageTooLargeError(name, "image too large, refused as a decompression bomb "
                                 f"({err})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ScanReadError(name, f"not a readable image ({err})") from None
    if pixels.ndim == 3 and pixels.shape[-1] == 4:  # drop alpha: it is not a modality
        pixels = pixels[..., :3]
    spacing = None
    if dpi and all(d > 1 for d in dpi):
        spacing = (25.4 / float(dpi[1]), 25.4 / float(dpi[0]))
    names = ("gray",) if pixels.ndim == 2 else tuple(f"c{i}" for i in range(pixels.shape[-1]))
    return Scan(_channels_first(pixels), spacing, Path(name), "image", names, meta={"mode": mode})


def read_tiff(path: Source, name: str | Path, max_elements: int) -> Scan:
    """Read a TIFF with tifffile (any bit depth, JPEG/deflate compressed via imagecodecs)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            check_elements(name, tif.series[0].shape, max_elements)
            pages = len(tif.series[0].pages)
            pixels = tif.series[0].asarray()
    except ScanReadError:
        raise
    except Exception as err:  # tifffile raises many types for corrupt files
        if hasattr(path, "seek"):
            path.seek(0)
        try:  # Pillow copes with a few TIFF flavours tifffile rejects
            scan = read_pillow(path, name, max_elements)
            scan.format = "tiff"
            return scan
        except (ImageTooLargeError, BusyError):
            raise
        except ScanReadError:
            raise ScanReadError(name, f"not a readable TIFF ({err})") from None
    pixels = np.asarray(pixels)
    if pages > 1:  # a stack of slices is not one image (and would be read as a tall one)
        raise ScanReadError(name, f"TIFF holds {pages} pages; tumorscope reads single-image "
                            "TIFFs: predict the pages one by one, or save the stack as NIfTI")
    if pixels.ndim == 3 and pixels.shape[0] < pixels.shape[-1] and pixels.shape[0] <= 4:
        pixels = np.moveaxis(pixels, 0, -1)  # planar (C, H, W) TIFF -> (H, W, C)
    if pixels.ndim not in (2, 3):
        raise ScanReadError(name, f"TIFF with {pixels.ndim} dimensions is not a 2D image")
    names = ("gray",) if pixels.ndim == 2 else tuple(f"c{i}" for i in range(pixels.shape[-1]))
    return Scan(_channels_first(pixels), None, Path(name), "tiff", names)
