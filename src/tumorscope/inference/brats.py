"""Inference for BraTS models: a case (four modalities) in, a label map on the input's grid
out. The 2D model runs over every axial slice (batched, MONAI ``SliceInferer``), the 3D
model by sliding windows with overlap and Gaussian blending; optional flip TTA. Region
probabilities are mapped back onto the input grid before thresholding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tumorscope.checkpoint.card import ModelCard
from tumorscope.errors import ScanReadError
from tumorscope.inference.inferers import over_slices, over_windows
from tumorscope.inference.prediction import Prediction
from tumorscope.inference.runtime import Runner
from tumorscope.io import Scan
from tumorscope.io.brats import MODALITIES, REGIONS, BratsCase, labels_from_regions
from tumorscope.transforms.volume3d import VolumePreprocessing

OUTPUT = "region_logits"


@dataclass
class CasePrediction:
    """Internal labels on the case's grid, and each region's volume."""

    case_id: str
    labels: np.ndarray  # (X, Y, Z) uint8: 1 NCR, 2 ED, 3 ET
    volumes_cm3: dict[str, float]
    model_id: str

    def record(self) -> dict[str, Any]:
        return {"case": self.case_id, "volumes_cm3": self.volumes_cm3,
                "shape": list(self.labels.shape), "model_id": self.model_id}


KEEP_FRACTION = 0.1
"""A tumour component is kept when it has at least this share of the largest one's voxels."""


def drop_specks(labels: np.ndarray, keep_fraction: float = KEEP_FRACTION) -> np.ndarray:
    """Remove scattered false positives: connected components of the whole tumour (26-
    connected) smaller than ``keep_fraction`` of the largest are set to background. A fixed
    rule (as nnU-Net's component post-processing), not tuned on any held-out case."""
    from scipy import ndimage

    components, count = ndimage.label(labels > 0, ndimage.generate_binary_structure(3, 3))
    if count < 2:
        return labels
    sizes = np.bincount(components.ravel())[1:]
    small = np.flatnonzero(sizes < keep_fraction * sizes.max()) + 1
    out = labels.copy()
    out[np.isin(components, small)] = 0
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class BratsInferer:
    """Preprocess -> network over the volume -> probabilities on the input grid -> labels."""

    def __init__(self, runner: Runner, card: ModelCard, threshold: float | None = None,
                 tta: bool = False) -> None:
        self.runner, self.card, self.tta = runner, card, tta
        self.threshold = 0.5 if threshold is None else threshold
        section = dict(card.preprocessing)
        self.modalities = list(section.get("modalities", MODALITIES))
        self.pre = VolumePreprocessing.model_validate(
            {k: section[k] for k in VolumePreprocessing.model_fields if k in section})
        self.family = str(card.model.get("family", "3d"))
        self.patch = tuple(int(n) for n in card.model.get("patch_size", (64, 64, 64)))

    @staticmethod
    def input_shape(card: ModelCard) -> tuple[int, ...]:
        """One sample's network input shape (channels, *patch)."""
        channels = len(card.preprocessing.get("modalities", MODALITIES))
        return (channels, *(int(n) for n in card.model.get("patch_size", (64, 64, 64))))

    def predict_scan(self, scan: Scan, slice_index: int | None = None) -> Prediction:
        """A single image is not a case: say what the model takes instead."""
        raise ScanReadError(scan.path, f"this BraTS model takes a case with "
                            f"{', '.join(self.modalities)}: run `tumorscope predict CASE_DIR`")

    def _logits(self, volume: np.ndarray) -> np.ndarray:
        def fn(batch: np.ndarray) -> dict[str, np.ndarray]:
            if self.family == "2d":  # smp encoders need sides that are multiples of 32
                pad = [(0, 0), (0, 0), *((0, -n % 32) for n in batch.shape[2:])]
                out = self.runner(np.ascontiguousarray(np.pad(batch, pad), np.float32))[OUTPUT]
                return {OUTPUT: out[:, :, :batch.shape[2], :batch.shape[3]]}
            return {OUTPUT: self.runner(np.ascontiguousarray(batch, np.float32))[OUTPUT]}

        if self.family == "2d":
            return over_slices(volume, fn)[OUTPUT]
        return over_windows(volume, fn, self.patch)[OUTPUT]  # type: ignore[arg-type]

    def probabilities(self, case: BratsCase) -> np.ndarray:
        """``(3, X, Y, Z)`` WT, TC, ET probabilities on the case's grid."""
        channels = [MODALITIES.index(m) for m in self.modalities]
        image, geometry = self.pre(case.image, case.spacing)
        volume = image[channels]
        probs = _sigmoid(self._logits(volume))
        if self.tta:  # mirror along the left-right axis and average
            flipped = _sigmoid(self._logits(np.ascontiguousarray(volume[:, ::-1])))
            probs = (probs + flipped[:, ::-1]) / 2
        return self.pre.invert(probs.astype(np.float32), geometry)

    def self_check(self) -> None:
        """Run the network once over a synthetic volume: finite logits, three regions."""
        shape = (*self.patch, 2) if self.family == "2d" else self.patch
        probe = np.random.default_rng(0).normal(size=(len(self.modalities), *shape))
        logits = self._logits(probe.astype(np.float32))
        if logits.shape[0] != len(REGIONS) or not np.isfinite(logits).all():
            raise ValueError(f"expected {len(REGIONS)} finite region maps, got shape "
                             f"{logits.shape}")

    def predict_case(self, case: BratsCase) -> CasePrediction:
        """Labels (internal convention) and region volumes for one case."""
        probs = self.probabilities(case) > self.threshold
        labels = drop_specks(labels_from_regions(probs[0], probs[1], probs[2]))
        voxel_cm3 = float(np.prod(case.spacing)) / 1000.0
        volumes = {name: float(np.isin(labels, members).sum() * voxel_cm3)
                   for name, members in REGIONS.items()}
        return CasePrediction(case.case_id, labels, volumes, self.card.id)
