"""DICOM reader (pydicom): modality rescale, MONOCHROME1 inversion, pixel spacing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tumorscope.errors import ScanReadError
from tumorscope.io.scan import Scan, Source, check_elements
from tumorscope.logs import quiet_libraries


def read_dicom(path: Source, name: str | Path, max_elements: int) -> Scan:
    """Read a single-frame (or multi-frame) DICOM image into Hounsfield/scanner units."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    quiet_libraries()  # pydicom resets its logger's level on import

    try:
        ds = pydicom.dcmread(path)
        shape = (int(getattr(ds, "NumberOfFrames", 1) or 1), int(getattr(ds, "Rows", 0)),
                 int(getattr(ds, "Columns", 0)), int(getattr(ds, "SamplesPerPixel", 1)))
        check_elements(name, shape, max_elements)
        pixels = ds.pixel_array
    except ScanReadError:
        raise
    except InvalidDicomError as err:
        raise ScanReadError(name, f"not a DICOM file ({err})") from None
    except AttributeError:
        raise ScanReadError(name, "DICOM file has no pixel data") from None
    except Exception as err:  # pydicom raises many types on truncated/unsupported pixel data
        raise ScanReadError(name, f"cannot decode DICOM pixel data ({err})") from None
    pixels = pixels.astype(np.float32)
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    pixels = pixels * slope + intercept
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "MONOCHROME1":  # high values are dark: invert so bright means signal
        pixels = pixels.max() + pixels.min() - pixels
    spacing = None
    if "PixelSpacing" in ds:
        spacing = tuple(float(v) for v in ds.PixelSpacing)
    samples = int(getattr(ds, "SamplesPerPixel", 1))
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if samples > 1:  # colour: (H, W, C) or (F, H, W, C)
        pixels = np.moveaxis(pixels, -1, 0)
        names = tuple(f"c{i}" for i in range(samples))
    elif frames > 1:  # (F, H, W) -> volume (1, H, W, F), slices on the last axis
        pixels = np.moveaxis(pixels, 0, -1)[None]
        thick = float(getattr(ds, "SliceThickness", 0) or 0)
        spacing = (*spacing, thick) if spacing and thick else spacing
        names = ("mr",)
    else:
        pixels = pixels[None]
        names = ("mr",)
    meta = {
        "modality": str(getattr(ds, "Modality", "")),
        "photometric": photometric,
        "rescale": (slope, intercept),
        "patient": str(getattr(ds, "PatientID", "")),
        "series": str(getattr(ds, "SeriesDescription", "")),
    }
    return Scan(pixels, spacing, Path(name), "dicom", names, meta=meta)
