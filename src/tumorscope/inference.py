"""Predictor: load a checkpoint once, predict many slices or volumes (no Lightning needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tumorscope.checkpoint import load_checkpoint
from tumorscope.io import Scan, read_scan
from tumorscope.transforms.preprocess import load_model_input, normalise


@dataclass
class Prediction:
    """The model's answer for one slice (or a volume, slice by slice)."""

    label: str
    probabilities: dict[str, float]
    mask: np.ndarray  # bool, the input's spatial shape
    spacing: tuple[float, ...] | None = None
    model_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def area_pixels(self) -> int:
        return int(self.mask.sum())

    @property
    def area_mm2(self) -> float | None:
        """Area (2D) or volume in mm³ (3D) when the pixel spacing is known."""
        if not self.spacing:
            return None
        return float(self.mask.sum() * float(np.prod(self.spacing[: self.mask.ndim])))

    def bounding_box(self) -> dict[str, int] | None:
        """Tight box around the mask (row/col, inclusive), or None when nothing was found."""
        if not self.mask.any():
            return None
        mask2d = self.mask if self.mask.ndim == 2 else self.mask.any(axis=-1)
        rows, cols = np.flatnonzero(mask2d.any(1)), np.flatnonzero(mask2d.any(0))
        return {"row_min": int(rows[0]), "row_max": int(rows[-1]),
                "col_min": int(cols[0]), "col_max": int(cols[-1])}

    def record(self) -> dict[str, Any]:
        """JSON-ready summary."""
        volume = self.mask.ndim == 3
        return {"class": self.label, "probabilities": self.probabilities,
                "tumour_area_pixels" if not volume else "tumour_voxels": self.area_pixels,
                "tumour_area_mm2" if not volume else "tumour_volume_mm3": self.area_mm2,
                "bounding_box": self.bounding_box(), "mask_shape": list(self.mask.shape),
                "spacing_mm": list(self.spacing) if self.spacing else None,
                "model_id": self.model_id, **self.extra}


class Predictor:
    """Loads the model once; thread-safe for concurrent ``predict_*`` calls (no shared state
    is mutated; torch inference runs under ``inference_mode``)."""

    def __init__(self, model: torch.nn.Module, card: dict[str, Any], device: str = "cpu",
                 threshold: float = 0.5, tta: bool = False) -> None:
        self.model = model.to(device).eval()
        self.card = card
        self.device = device
        self.threshold = threshold
        self.tta = tta
        pre = card["preprocessing"]
        self.size = int(pre["input_size"])
        self.channels = int(pre["in_channels"])
        self.normalization = str(pre["normalization"])
        self.stats = tuple(pre["stats"]) if pre.get("stats") else None
        self.classes: list[str] = list(card["classes"])
        self.model_id = str(card.get("model_id", card.get("name", "model")))

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", **kw: Any) -> Predictor:
        model, card = load_checkpoint(path)
        return cls(model, card, device, **kw)

    def preprocess(self, array: np.ndarray, source: Any = None) -> np.ndarray:
        """``(C, H, W)`` raw pixels -> normalised ``(channels, S, S)`` model input."""
        image = load_model_input(array, self.channels, self.size, source)
        return normalise(image, self.normalization, self.stats).astype(np.float32)

    @torch.inference_mode()
    def predict_arrays(self, arrays: list[np.ndarray], batch_size: int = 16,
                       sources: list[Any] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Raw ``(C, H, W)`` arrays -> ``(class probabilities, bool mask at input size)``."""
        results: list[tuple[np.ndarray, np.ndarray]] = []
        for start in range(0, len(arrays), batch_size):
            chunk = arrays[start:start + batch_size]
            srcs = (sources or [None] * len(arrays))[start:start + batch_size]
            batch = torch.from_numpy(np.stack([self.preprocess(a, s)
                                               for a, s in zip(chunk, srcs, strict=True)]))
            mask_logits, class_logits = self._forward(batch.to(self.device))
            probs = class_logits.softmax(1).cpu().numpy()
            mask_prob = torch.sigmoid(mask_logits)
            for i, array in enumerate(chunk):
                full = F.interpolate(mask_prob[i:i + 1], size=array.shape[1:], mode="bilinear",
                                     align_corners=False)[0, 0]
                results.append((probs[i], (full > self.threshold).cpu().numpy()))
        return results

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask_logits, class_logits = self.model(batch)
        if self.tta:  # average with the horizontally flipped view
            flipped_mask, flipped_cls = self.model(batch.flip(-1))
            mask_logits = (mask_logits + flipped_mask.flip(-1)) / 2
            class_logits = torch.log((class_logits.softmax(1) + flipped_cls.softmax(1)) / 2)
        return mask_logits, class_logits

    def predict_scan(self, scan: Scan, slice_index: int | None = None) -> Prediction:
        """Predict a 2D scan, one slice of a volume, or every axial slice of a volume.

        For a whole volume the class is the tumour-area-weighted mean of slice probabilities
        (all slices equally when no tumour is found) and the mask is 3D.
        """
        if scan.is_volume and slice_index is not None:
            scan = scan.slice(slice_index)
        if not scan.is_volume:
            probs, mask = self.predict_arrays([scan.array], sources=[scan.path])[0]
            return self._prediction(probs, mask, scan.spacing)
        slices = [scan.array[..., k] for k in range(scan.array.shape[-1])]
        results = self.predict_arrays(slices, sources=[scan.path] * len(slices))
        masks = np.stack([m for _, m in results], axis=-1)
        areas = np.array([m.sum() for _, m in results], dtype=float)
        weights = areas if areas.sum() > 0 else np.ones_like(areas)
        probs = np.average(np.stack([p for p, _ in results]), axis=0, weights=weights)
        return self._prediction(probs, masks, scan.spacing,
                                {"slices": len(slices),
                                 "slices_with_tumour": int((areas > 0).sum())})

    def predict_file(self, path: str | Path, slice_index: int | None = None) -> Prediction:
        """Read any supported file and predict it."""
        return self.predict_scan(read_scan(path), slice_index)

    def _prediction(self, probs: np.ndarray, mask: np.ndarray, spacing: Any,
                    extra: dict[str, Any] | None = None) -> Prediction:
        return Prediction(label=self.classes[int(np.argmax(probs))],
                          probabilities={c: float(p) for c, p in zip(self.classes, probs,
                                                                      strict=True)},
                          mask=mask, spacing=spacing, model_id=self.model_id, extra=extra or {})
