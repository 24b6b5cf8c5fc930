"""A run's Lightning checkpoints: written atomically, read without running code from them.

``.ckpt`` files are pickles. They are loaded with ``torch.load(weights_only=True)``: only
tensors, plain Python values and the few NumPy types our checkpoints hold (the saved NumPy
random state) can be rebuilt; anything else, such as a crafted file's payload, is refused
with one line before it can run. They are written to a temporary file in their own folder,
flushed to disk and renamed, so a kill never leaves a torn ``step.ckpt`` in place of a good
one (Lightning's own writer goes through ``$TMPDIR``, which may be another filesystem).
"""

from __future__ import annotations

import importlib
import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from tumorscope.errors import CheckpointError

TMP_MARK = ".tmp-"

# what np.random.get_state() pickles as: an array of uint32 and its dtype
NUMPY_GLOBALS: list[Any] = [importlib.import_module("numpy._core.multiarray")._reconstruct,
                            np.ndarray, np.dtype, type(np.dtype(np.uint32))]


@contextmanager
def safe_unpickling() -> Iterator[None]:
    """Allow-list the NumPy types of our checkpoints for ``weights_only`` loading."""
    with torch.serialization.safe_globals(NUMPY_GLOBALS):
        yield


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint as a dict, or a one-line :class:`CheckpointError`."""
    try:
        with safe_unpickling():
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        raise CheckpointError(path, f"refused: it holds more than tensors and plain values, "
                              f"so loading it could run code ({first})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(path, f"not a readable checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else 'empty'})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(path, "not a Lightning training checkpoint (no state_dict)")
    return ckpt


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O: temp file beside the target, fsync, rename; safe loading."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any = None) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}{TMP_MARK}{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a power cut
        finally:
            os.close(folder)

    def load_checkpoint(self, path: Any, map_location: Any = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        return load_training_checkpoint(Path(path))


def remove_orphans(folder: Path) -> list[Path]:
    """Delete temporary checkpoint files a killed run left behind; returns them."""
    orphans = [p for p in folder.glob(f".*{TMP_MARK}*") if p.is_file()]
    for p in orphans:
        p.unlink(missing_ok=True)
    return orphans
