"""Inference for the joint task: class probabilities and a tumour mask for a slice; for a
volume, every axial slice (MONAI ``SliceInferer``) with a tumour-area-weighted class."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from tumorscope.checkpoint.card import ModelCard
from tumorscope.inference.inferers import over_slices
from tumorscope.inference.prediction import Prediction
from tumorscope.inference.runtime import Runner
from tumorscope.io import Scan
from tumorscope.transforms.slice2d import SlicePreprocessing


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over axis 1."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, stable for large ``|x|``."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class JointInferer:
    """Preprocess -> network (``mask_logits``, ``class_logits``) -> probabilities and a mask
    at the input's size. Holds no mutable state, so concurrent calls are safe."""

    def __init__(self, runner: Runner, card: ModelCard, threshold: float = 0.5,
                 tta: bool = False) -> None:
        self.runner, self.card = runner, card
        self.threshold, self.tta = threshold, tta
        self.pre = SlicePreprocessing.from_card(card.preprocessing)
        self.classes = list(card.classes)

    @staticmethod
    def input_shape(card: ModelCard) -> tuple[int, ...]:
        """One sample's network input shape ``(C, S, S)``."""
        pre = SlicePreprocessing.from_card(card.preprocessing)
        return (pre.in_channels, pre.input_size, pre.input_size)

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and mask probabilities; TTA averages the flipped view."""
        out = self.runner(batch)
        probs, mask_prob = softmax(out["class_logits"]), sigmoid(out["mask_logits"])
        if self.tta:
            flipped = self.runner(np.ascontiguousarray(batch[..., ::-1]))
            probs = (probs + softmax(flipped["class_logits"])) / 2
            mask_prob = (mask_prob + sigmoid(flipped["mask_logits"])[..., ::-1]) / 2
        return probs, mask_prob

    def _probabilities(self, arrays: list[np.ndarray], sources: list[Any]
                       ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Class probabilities ``(B, K)`` and each slice's mask probabilities at its own size,
        for raw ``(C, H, W)`` slices run as one batch."""
        batch = np.stack([self.pre(a, s) for a, s in zip(arrays, sources, strict=True)])
        probs, mask_prob = self._forward(batch)
        full = [cv2.resize(np.ascontiguousarray(m[0]), (a.shape[2], a.shape[1]),
                           interpolation=cv2.INTER_LINEAR) for m, a in zip(mask_prob, arrays,
                                                                           strict=True)]
        return probs, full

    def predict_arrays(self, arrays: list[np.ndarray], batch_size: int = 16,
                       sources: list[Any] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Raw ``(C, H, W)`` arrays -> ``(class probabilities, bool mask at input size)``."""
        sources = sources or [None] * len(arrays)
        results: list[tuple[np.ndarray, np.ndarray]] = []
        for start in range(0, len(arrays), batch_size):
            probs, masks = self._probabilities(arrays[start:start + batch_size],
                                               sources[start:start + batch_size])
            results += [(p, m > self.threshold) for p, m in zip(probs, masks, strict=True)]
        return results

    def predict_scan(self, scan: Scan, slice_index: int | None = None) -> Prediction:
        """A 2D scan, one slice of a volume, or every axial slice of a volume.

        For a whole volume the class is the tumour-area-weighted mean of slice probabilities
        (all slices equally when no tumour is found) and the mask is 3D.
        """
        if scan.is_volume and slice_index is not None:
            scan = scan.slice(slice_index)
        if not scan.is_volume:
            probs, mask = self.predict_arrays([scan.array], sources=[scan.path])[0]
            return self._prediction(probs, mask, scan.spacing)

        def per_slice(batch: np.ndarray) -> dict[str, np.ndarray]:
            probs, masks = self._probabilities(list(batch), [scan.path] * len(batch))
            return {"mask": np.stack(masks)[:, None], "probs": probs[:, :, None, None]}

        out = over_slices(scan.array, per_slice)
        masks = out["mask"][0] > self.threshold
        per_slice_probs = out["probs"][:, 0, 0, :].T  # (slices, K); 1x1 per slice
        areas = masks.sum(axis=(0, 1)).astype(float)
        weights = areas if areas.sum() > 0 else np.ones_like(areas)
        probs = np.average(per_slice_probs, axis=0, weights=weights)
        return self._prediction(probs, masks, scan.spacing,
                                {"slices": masks.shape[-1],
                                 "slices_with_tumour": int((areas > 0).sum())})

    def _prediction(self, probs: np.ndarray, mask: np.ndarray, spacing: Any,
                    extra: dict[str, Any] | None = None) -> Prediction:
        return Prediction(label=self.classes[int(np.argmax(probs))],
                          probabilities={c: float(p) for c, p in zip(self.classes, probs,
                                                                      strict=True)},
                          mask=mask, spacing=spacing, model_id=self.card.id, extra=extra or {})
