"""Atomic writers: outputs appear complete or not at all."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success only."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644 & ~_umask())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """Yield a fresh hidden folder beside ``target``; on success it is renamed to ``target``
    (or, when ``target`` exists, each of its files is renamed into it), on failure removed."""
    from tumorscope.errors import TumorscopeError

    target = Path(target)
    if target.exists() and not target.is_dir():
        raise TumorscopeError(target, "exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield tmp
        if target.is_dir():
            for item in sorted(tmp.iterdir()):
                os.replace(item, target / item.name)
        else:
            os.chmod(tmp, 0o777 & ~_umask())
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_atomic(target: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``target``."""
    with atomic_path(target) as tmp:
        write(tmp)
    return Path(target)


def write_json(target: str | Path, data: Any) -> Path:
    """Write pretty, strict JSON atomically: NaN and infinities (not JSON) become null."""
    text = json.dumps(finite_json(data), indent=2, sort_keys=False, default=_json_default,
                      allow_nan=False)
    return write_atomic(target, lambda p: p.write_text(text + "\n", encoding="utf-8"))


def finite_json(data: Any) -> Any:
    """``data`` with every non-finite float (also NumPy's) replaced by None."""
    if isinstance(data, float | np.floating):
        return float(data) if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_json(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [finite_json(v) for v in data]
    if isinstance(data, np.ndarray):
        return finite_json(data.tolist())
    return data


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_png(target: str | Path, pixels: np.ndarray) -> Path:
    """Write a uint8 gray (H, W) or RGB (H, W, 3) array as PNG atomically."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(pixels))
    return write_atomic(target, lambda p: img.save(p, format="PNG"))


def write_mask_png(target: str | Path, mask: np.ndarray) -> Path:
    """Write a binary mask as a 0/255 PNG."""
    return write_png(target, (np.asarray(mask) > 0).astype(np.uint8) * 255)


def write_mask_nifti(target: str | Path, mask: np.ndarray, affine: np.ndarray | None) -> Path:
    """Write a label mask as NIfTI (uint8) with the input's affine."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(mask).astype(np.uint8),
                          affine if affine is not None else np.eye(4))
    return write_atomic(target, lambda p: nib.save(img, str(p)))
