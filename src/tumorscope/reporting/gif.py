"""Animated GIFs of slice stacks (e.g. a patient's slices with outlines)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tumorscope.io.writers import write_atomic


def write_gif(target: str | Path, frames: Sequence[np.ndarray], ms_per_frame: int = 120) -> Path:
    """Write RGB uint8 frames as a looping GIF, atomically."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    return write_atomic(target, lambda p: images[0].save(
        p, format="GIF", save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0))
