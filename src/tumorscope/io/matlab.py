"""The figshare brain-tumour ``.mat`` (MATLAB v7.3 = HDF5) slice format (Cheng et al.)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tumorscope.errors import ScanReadError
from tumorscope.io.scan import Scan, Source, check_elements

LABEL_NAMES = {1: "meningioma", 2: "glioma", 3: "pituitary"}


def _decode_chars(dataset: np.ndarray) -> str:
    """MATLAB stores a char array as uint16 codes; decode to a Python string."""
    return "".join(chr(int(c)) for c in np.asarray(dataset).ravel() if int(c) != 0)


def read_figshare_mat(path: Source, name: str | Path | None = None,
                      max_elements: int | None = None) -> Scan:
    """Read one figshare slice: ``cjdata/{image,label,PID,tumorBorder,tumorMask}``.

    MATLAB writes arrays column-major, so every 2D array is transposed back here.
    """
    import h5py

    name = name if name is not None else path  # type: ignore[assignment]
    try:
        with h5py.File(path, "r") as f:
            if "cjdata" not in f:
                raise ScanReadError(name, "MATLAB file has no 'cjdata' group (not a figshare "
                                    f"brain-tumour slice); found {sorted(f.keys())}")
            cj = f["cjdata"]
            missing = [k for k in ("image", "label", "PID") if k not in cj]
            if missing:
                raise ScanReadError(name, f"'cjdata' lacks {missing}")
            bad = [k for k in ("image", "label", "PID") if not isinstance(cj[k], h5py.Dataset)]
            if bad:
                raise ScanReadError(name, f"'cjdata/{bad[0]}' is a group, expected an array")
            if max_elements is not None:
                check_elements(name or "figshare .mat", cj["image"].shape, max_elements)
            image = np.asarray(cj["image"][()]).T
            label = int(np.asarray(cj["label"][()]).ravel()[0])
            pid = _decode_chars(cj["PID"][()])
            mask = np.asarray(cj["tumorMask"][()]).T.astype(bool) if "tumorMask" in cj else None
            border = np.asarray(cj["tumorBorder"][()]).ravel() if "tumorBorder" in cj else None
    except ScanReadError:
        raise
    except OSError as err:
        raise ScanReadError(name, f"not a readable MATLAB v7.3 (HDF5) file: {err}") from None
    except (KeyError, ValueError, IndexError, TypeError, AttributeError) as err:
        raise ScanReadError(name, f"malformed figshare 'cjdata' content: {err}") from None
    if image.ndim != 2:
        raise ScanReadError(name, f"'cjdata/image' has shape {image.shape}, expected 2D")
    if mask is not None and mask.shape != image.shape:
        raise ScanReadError(name, f"tumorMask shape {mask.shape} differs from image {image.shape}")
    meta = {"label": label, "label_name": LABEL_NAMES.get(label, str(label)), "patient": pid}
    if border is not None and border.size:
        # tumorBorder is [x1, y1, x2, y2, ...] in MATLAB's 1-based (row, col) convention
        meta["tumor_border"] = border.reshape(-1, 2).tolist()
    return Scan(image[None], None, Path(str(name)), "figshare-mat", ("t1ce",), mask=mask, meta=meta)
