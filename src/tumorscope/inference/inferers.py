"""Running a network over more than it takes at once, with MONAI's inferers: a 2D model over
every slice of a volume (``SliceInferer``), a 3D model over overlapping windows
(``SlidingWindowInferer``). ``fn`` maps a float32 batch to named outputs with the batch's
spatial size, stitched back into the volume's grid; an output of spatial size 1 (e.g. class
probabilities as ``(b, K, 1, 1)``) comes back as one value per slice."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

BatchFn = Callable[[np.ndarray], dict[str, np.ndarray]]


def _as_network(fn: BatchFn) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    def network(x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = fn(x.numpy())
        return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
                for k, v in out.items()}
    return network


def over_slices(volume: np.ndarray, fn: BatchFn, batch_size: int = 16,
                axis: int = -1) -> dict[str, np.ndarray]:
    """``(C, X, Y, Z)`` volume -> ``{name: (K, X, Y, Z)}``, ``fn`` seeing ``(b, C, X, Y)``
    slices along ``axis`` (of the three spatial axes; default the last, axial for NIfTI)."""
    from monai.inferers import SliceInferer

    spatial = volume.shape[1:]
    dim = axis % 3
    roi = tuple(s for i, s in enumerate(spatial) if i != dim)
    inferer = SliceInferer(roi_size=roi, sw_batch_size=batch_size, spatial_dim=dim,
                           progress=False)
    x = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None]
    with torch.inference_mode():
        out = inferer(x, _as_network(fn))
    assert isinstance(out, dict)
    return {k: v[0].numpy() for k, v in out.items()}


def over_windows(volume: np.ndarray, fn: BatchFn, roi: tuple[int, int, int],
                 batch_size: int = 1, overlap: float = 0.5,
                 mode: str = "gaussian") -> dict[str, np.ndarray]:
    """``(C, X, Y, Z)`` volume -> ``{name: (K, X, Y, Z)}``, ``fn`` seeing ``(b, C, *roi)``
    windows that overlap by ``overlap``, blended with ``mode`` weights."""
    from monai.inferers import SlidingWindowInferer

    inferer = SlidingWindowInferer(roi_size=roi, sw_batch_size=batch_size, overlap=overlap,
                                   mode=mode, progress=False)
    x = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None]
    with torch.inference_mode():
        out = inferer(x, _as_network(fn))
    assert isinstance(out, dict)
    return {k: v[0].numpy() for k, v in out.items()}
