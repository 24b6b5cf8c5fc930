"""Predictor: load a checkpoint once, predict many slices or volumes (no Lightning needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tumorscope.checkpoint import checkpoint_paths, load_checkpoint, read_card
from tumorscope.io import Scan, read_scan
from tumorscope.runtime import ONNX_NAME, OnnxRunner, Runner, TorchRunner, choose_backend
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


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for large |x|


class Predictor:
    """Loads the model once; safe for concurrent ``predict_*`` calls (no shared state is
    mutated). Runs on eager PyTorch or ONNX Runtime (``backend``)."""

    def __init__(self, runner: Runner, card: dict[str, Any], threshold: float = 0.5,
                 tta: bool = False) -> None:
        self.runner = runner
        self.card = card
        self.threshold = threshold
        self.tta = tta
        pre = card["preprocessing"]
        self.size = int(pre["input_size"])
        self.channels = int(pre["in_channels"])
        self.normalization = str(pre["normalization"])
        self.stats = tuple(pre["stats"]) if pre.get("stats") else None
        self.classes: list[str] = list(card["classes"])
        self.model_id = str(card.get("model_id", card.get("name", "model")))

    @property
    def backend(self) -> str:
        return self.runner.name

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", backend: str = "auto",
                        **kw: Any) -> Predictor:
        """Load ``model.safetensors`` (torch) or ``model.onnx`` beside it (onnx); 'auto'
        prefers ONNX Runtime on CPU when the export exists and onnxruntime is installed."""
        weights, _ = checkpoint_paths(path)
        onnx_path = weights.with_name(ONNX_NAME)
        chosen = choose_backend(backend if device == "cpu" else "torch", onnx_path)
        if chosen == "onnx":
            return cls(OnnxRunner(onnx_path), read_card(path), **kw)
        model, card = load_checkpoint(path)
        return cls(TorchRunner(model, device), card, **kw)

    def preprocess(self, array: np.ndarray, source: Any = None) -> np.ndarray:
        """``(C, H, W)`` raw pixels -> normalised ``(channels, S, S)`` model input."""
        image = load_model_input(array, self.channels, self.size, source)
        return normalise(image, self.normalization, self.stats).astype(np.float32)

    def predict_arrays(self, arrays: list[np.ndarray], batch_size: int = 16,
                       sources: list[Any] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Raw ``(C, H, W)`` arrays -> ``(class probabilities, bool mask at input size)``."""
        results: list[tuple[np.ndarray, np.ndarray]] = []
        for start in range(0, len(arrays), batch_size):
            chunk = arrays[start:start + batch_size]
            srcs = (sources or [None] * len(arrays))[start:start + batch_size]
            batch = np.stack([self.preprocess(a, s) for a, s in zip(chunk, srcs, strict=True)])
            probs, mask_prob = self._forward(batch)
            for i, array in enumerate(chunk):
                height, width = array.shape[1:]
                full = cv2.resize(np.ascontiguousarray(mask_prob[i, 0]), (width, height),
                                  interpolation=cv2.INTER_LINEAR)
                results.append((probs[i], full > self.threshold))
        return results

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and mask probabilities; TTA averages the flipped view."""
        mask_logits, class_logits = self.runner(batch)
        probs, mask_prob = _softmax(class_logits), _sigmoid(mask_logits)
        if self.tta:
            flipped_mask, flipped_cls = self.runner(np.ascontiguousarray(batch[..., ::-1]))
            probs = (probs + _softmax(flipped_cls)) / 2
            mask_prob = (mask_prob + _sigmoid(flipped_mask)[..., ::-1]) / 2
        return probs, mask_prob

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
