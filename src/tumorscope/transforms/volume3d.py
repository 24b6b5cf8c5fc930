"""3D multimodal preprocessing shared by training and inference, with its exact inverse.

Per modality: intensities clipped to percentiles (0.5-99.5) and z-scored inside the brain
(voxels nonzero in any modality; outside stays 0); the volume cropped to the brain's bounding
box (plus a margin); optionally resampled to a coarser spacing for CPU work. :meth:`invert`
maps a prediction on the network's grid back onto the input grid: same shape, voxel for
voxel aligned, the cropped-away border filled with background.

:class:`VolumePreprocessing` is the model card's ``preprocessing`` section for BraTS models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

Triple = tuple[int, int, int]


@dataclass(frozen=True)
class VolumeGeometry:
    """Where the network's grid sits in the input grid (what :meth:`invert` needs)."""

    shape: Triple  # input grid
    box: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # crop [start, stop) per axis
    grid: Triple  # network grid (after resampling)

    @property
    def cropped(self) -> Triple:
        (a0, a1), (b0, b1), (c0, c1) = self.box
        return (a1 - a0, b1 - b0, c1 - c0)


def _resize(array: np.ndarray, size: Sequence[int], labels: bool) -> np.ndarray:
    """``(C, X, Y, Z)`` -> ``(C, *size)``: trilinear for intensities and probabilities,
    nearest for label maps."""
    if tuple(array.shape[1:]) == tuple(size):
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array))[None]
    if labels:
        out = torch.nn.functional.interpolate(tensor.float(), size=tuple(size),
                                              mode="nearest-exact")
        return out[0].numpy().astype(array.dtype)
    out = torch.nn.functional.interpolate(tensor.float(), size=tuple(size), mode="trilinear",
                                          align_corners=False)
    return out[0].numpy()


class VolumePreprocessing(BaseModel):
    """Settings (stored in the model card) and the transform itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    crop_to_brain: bool = True
    margin: int = Field(2, ge=0)
    spacing: tuple[float, float, float] | None = None  # mm; None keeps the input's

    @staticmethod
    def brain_mask(image: np.ndarray) -> np.ndarray:
        """Voxels nonzero in any modality."""
        return np.any(image != 0, axis=0)

    def normalise(self, image: np.ndarray, brain: np.ndarray) -> np.ndarray:
        """Per modality: clip to the percentiles, z-score, both inside ``brain``."""
        out = np.zeros(image.shape, np.float32)
        if not brain.any():
            return out
        low_q, high_q = self.clip_percentiles
        for k, channel in enumerate(image):
            values = channel[brain].astype(np.float32)
            low, high = np.percentile(values, [low_q, high_q])
            values = np.clip(values, low, high)
            std = float(values.std())
            out[k][brain] = (values - values.mean()) / (std if std > 0 else 1.0)
        return out

    def geometry(self, brain: np.ndarray, spacing: Sequence[float]) -> VolumeGeometry:
        """Crop box and network grid for an input with this brain mask and spacing."""
        shape: Triple = (int(brain.shape[0]), int(brain.shape[1]), int(brain.shape[2]))
        if self.crop_to_brain and brain.any():
            nonzero = np.nonzero(brain)
            box = tuple((max(int(i.min()) - self.margin, 0),
                         min(int(i.max()) + self.margin + 1, n))
                        for i, n in zip(nonzero, shape, strict=True))
        else:
            box = tuple((0, n) for n in shape)
        cropped = [stop - start for start, stop in box]
        if self.spacing is None:
            grid = tuple(cropped)
        else:
            grid = tuple(max(1, round(n * s / t)) for n, s, t in
                         zip(cropped, spacing, self.spacing, strict=True))
        return VolumeGeometry(shape, box, grid)  # type: ignore[arg-type]

    def __call__(self, image: np.ndarray, spacing: Sequence[float]
                 ) -> tuple[np.ndarray, VolumeGeometry]:
        """``(C, X, Y, Z)`` raw modalities -> network input and its geometry."""
        brain = self.brain_mask(image)
        geometry = self.geometry(brain, spacing)
        box = tuple(slice(a, b) for a, b in geometry.box)
        every_channel = (slice(None), *box)
        normalised = self.normalise(image[every_channel], brain[box])
        return _resize(normalised, geometry.grid, labels=False), geometry

    def labels(self, labels: np.ndarray, geometry: VolumeGeometry) -> np.ndarray:
        """An ``(X, Y, Z)`` label map of the input grid -> the network grid (training)."""
        box = tuple(slice(a, b) for a, b in geometry.box)
        return _resize(labels[box][None], geometry.grid, labels=True)[0]

    def invert(self, prediction: np.ndarray, geometry: VolumeGeometry, labels: bool = False,
               fill: float = 0.0) -> np.ndarray:
        """A ``(K, *grid)`` probability map (or ``(*grid)`` label map with ``labels``) on the
        network grid -> the input grid, exactly its shape; outside the crop ``fill``."""
        squeeze = prediction.ndim == 3
        maps = prediction[None] if squeeze else prediction
        if tuple(maps.shape[1:]) != geometry.grid:
            raise ValueError(f"prediction grid {maps.shape[1:]} is not {geometry.grid}")
        resized = _resize(maps, geometry.cropped, labels=labels)
        out = np.full((maps.shape[0], *geometry.shape), fill, dtype=resized.dtype)
        every_channel = (slice(None), *(slice(a, b) for a, b in geometry.box))
        out[every_channel] = resized
        return out[0] if squeeze else out
