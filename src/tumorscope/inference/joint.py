"""Inference for 2D slice models: class probabilities and, for the joint task, a tumour mask
for a slice; for a volume, every axial slice (MONAI ``SliceInferer``) with a
tumour-area-weighted class. A classifier (classify task) gives no mask: its predictions say
so (``segmentation: false``) and carry an empty one."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from tumorscope.checkpoint.card import Calibration, ModelCard
from tumorscope.errors import TumorscopeError
from tumorscope.inference.inferers import over_slices
from tumorscope.inference.input_checks import unlike_mri
from tumorscope.inference.prediction import Prediction
from tumorscope.inference.runtime import Runner, mc_samples
from tumorscope.io import Scan
from tumorscope.tasks.registry import get_task
from tumorscope.transforms.slice2d import SlicePreprocessing
from tumorscope.uncertainty import mutual_information, no_tumour_class, softmax, typicality


class SliceOutput(NamedTuple):
    """One slice's answer: calibrated class probabilities, the bool mask at the input's
    size, the feature distance (calibrated models) and the MC-dropout mutual information."""

    probs: np.ndarray
    mask: np.ndarray
    distance: float | None
    spread: float | None


def _item(values: np.ndarray | None, i: int) -> float | None:
    return None if values is None else float(values[i])


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, stable for large ``|x|``."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


RESCUE_MIN_PEAK = 0.05  # below this peak the network saw no tumour at all: nothing to rescue


def tumour_mask(prob: np.ndarray, threshold: float, rescue: float | None = None) -> np.ndarray:
    """Pixels whose mask probability exceeds ``threshold``; when none does and ``rescue`` is
    set (a tumour was found on a calibrated model), those above ``rescue`` times the slice's
    peak probability (a peak of at least ``RESCUE_MIN_PEAK``), so a tumour the classifier
    found is still outlined where the network is least unsure."""
    mask = prob > threshold
    peak = float(prob.max()) if prob.size else 0.0
    if rescue is not None and not mask.any() and peak >= RESCUE_MIN_PEAK:
        mask = prob > rescue * peak
    return mask


class JointInferer:
    """Preprocess -> network (``mask_logits``, ``class_logits``[, ``ood_distance``]) ->
    calibrated probabilities, a mask at the input's size, the tumour / no-tumour decision
    and the out-of-distribution verdict (when the card holds a calibration). Holds no
    mutable state, so concurrent calls are safe."""

    def __init__(self, runner: Runner, card: ModelCard, threshold: float | None = None,
                 tta: bool = False, outline: str | None = None) -> None:
        self.runner, self.card, self.tta = runner, card, tta
        # one mask output per outline definition (model.outlines); the first by default
        self.outlines: list[str] = list(card.model.get("outlines") or [])
        first = self.outlines[0] if self.outlines else None
        self.outline: str | None = outline if outline is not None else first
        self.outline_index(self.outline)
        self.pre = SlicePreprocessing.from_card(card.preprocessing)
        self.classes = list(card.classes)
        self.calibration = cal = card.calibration or Calibration(fitted_on="none")
        # the mask rule: the given threshold, else the one calibrated on validation, else 0.5
        self.threshold = threshold if threshold is not None else cal.mask_threshold or 0.5
        self.segments = "mask_logits" in get_task(card.task, "model card task").outputs
        none = self.calibration.no_tumour_class
        if none is None and not self.segments:  # an uncalibrated classifier: its own class
            none = no_tumour_class(self.classes)
        self.no_tumour = self.classes.index(none) if none in self.classes else None

    def outline_index(self, name: str | None) -> int:
        """The mask output of outline ``name`` (None: the inferer's own); an unknown name is
        a one-line error listing the model's outlines."""
        name = self.outline if name is None else name
        if name is None:
            return 0
        if name not in self.outlines:
            have = f"its outlines are {self.outlines}" if self.outlines else "it has one outline"
            raise TumorscopeError("--outline", f"model {self.card.id} has no outline {name!r}; "
                                  f"{have}")
        return self.outlines.index(name)

    def outlines_of(self, datasets: list[str | None]) -> list[str | None] | None:
        """For slices of these datasets, each one's own outline definition on a model with
        one mask per dataset (others: the inferer's own); None for a model with one."""
        if not self.outlines:
            return None
        return [d if d in self.outlines else None for d in datasets]

    @staticmethod
    def input_shape(card: ModelCard) -> tuple[int, ...]:
        """One sample's network input shape ``(C, S, S)``."""
        pre = SlicePreprocessing.from_card(card.preprocessing)
        return (pre.in_channels, pre.input_size, pre.input_size)

    def _forward(self, batch: np.ndarray, outlines: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Calibrated class probabilities, mask probabilities, feature distances (None for a
        model without them) and, under Monte Carlo dropout, the mutual information of the
        sampled class probabilities (else None); TTA averages the flipped view."""
        views = [self.runner(batch)]
        if self.tta:
            views.append(self.runner(np.ascontiguousarray(batch[..., ::-1])))
        t = self.calibration.temperature
        sampled = [softmax(v["class_logits_mc"], t) for v in views if "class_logits_mc" in v]
        probs = np.mean([softmax(v["class_logits"], t) for v in views], axis=0) if not sampled \
            else np.concatenate(sampled).mean(axis=0)
        masks = [self._mask(v, outlines) for v in views]
        mask_prob = masks[0] if len(masks) == 1 else (masks[0] + masks[1][..., ::-1]) / 2
        spread = mutual_information(np.concatenate(sampled)) if sampled else None
        return probs, mask_prob, views[0].get("ood_distance"), spread

    def _mask(self, out: dict[str, np.ndarray], outlines: np.ndarray) -> np.ndarray:
        """Mask probabilities ``(B, 1, S, S)`` of each slice's outline (index per slice); a
        classifier's are 0 (one pixel, resized)."""
        if not self.segments:
            return np.zeros((len(outlines), 1, 1, 1), np.float32)
        logits = out["mask_logits"]
        if logits.shape[1] > 1:
            logits = logits[np.arange(len(outlines)), outlines][:, None]
        return sigmoid(logits)

    def _probabilities(self, arrays: list[np.ndarray], sources: list[Any],
                       outlines: list[str | None] | None = None
                       ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None,
                                  np.ndarray | None]:
        """Class probabilities ``(B, K)``, each slice's mask probabilities at its own size
        (of its outline, by name; None: the inferer's own), the feature distances and the
        MC-dropout spread, for raw ``(C, H, W)`` slices run as one batch."""
        inputs, frames = zip(*(self.pre.framed(a, s) for a, s in zip(arrays, sources,
                                                                      strict=True)), strict=True)
        index = np.array([self.outline_index(o) for o in outlines or [None] * len(arrays)])
        probs, mask_prob, distance, spread = self._forward(np.stack(inputs), index)
        full = [f.paste(m[0]) for m, f in zip(mask_prob, frames, strict=True)]
        return probs, full, distance, spread

    def predict_arrays(self, arrays: list[np.ndarray], batch_size: int = 16,
                       sources: list[Any] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Raw ``(C, H, W)`` arrays -> ``(class probabilities, bool mask at input size)``."""
        return [(o.probs, o.mask) for o in self.predict_batch(arrays, batch_size, sources)]

    def predict_batch(self, arrays: list[np.ndarray], batch_size: int = 16,
                      sources: list[Any] | None = None,
                      outlines: list[str | None] | None = None) -> list[SliceOutput]:
        """Raw ``(C, H, W)`` arrays -> class probabilities, bool mask (of each one's outline
        by name, None: the inferer's own), feature distance and MC-dropout spread of each."""
        sources = sources or [None] * len(arrays)
        named = outlines or [None] * len(arrays)
        results: list[SliceOutput] = []
        for start in range(0, len(arrays), batch_size):
            probs, masks, distance, spread = self._probabilities(
                arrays[start:start + batch_size], sources[start:start + batch_size],
                named[start:start + batch_size])
            results += [SliceOutput(p, self._mask_of(p, m), _item(distance, i), _item(spread, i))
                        for i, (p, m) in enumerate(zip(probs, masks, strict=True))]
        return results

    def _mask_of(self, probs: np.ndarray, mask_prob: np.ndarray) -> np.ndarray:
        """The bool mask of one slice; the calibrated rescue applies when a tumour was found."""
        rescue = self.calibration.mask_rescue if self.decide(probs)[1] else None
        return tumour_mask(mask_prob, self.threshold, rescue)

    def tumour_probability(self, probs: np.ndarray) -> float | None:
        """``1 - p(no tumour)`` for a model with a "no tumour" class, else None."""
        return None if self.no_tumour is None else float(1.0 - probs[self.no_tumour])

    def decide(self, probs: np.ndarray) -> tuple[str, bool | None]:
        """The label and whether a tumour was found: "no tumour" when the tumour
        probability is below the threshold chosen on validation, else the likeliest
        tumour type."""
        tumour = self.tumour_probability(probs)
        if tumour is None:
            return self.classes[int(np.argmax(probs))], None
        threshold = self.calibration.tumour_threshold
        found = tumour >= (0.5 if threshold is None else threshold)
        if not found:
            return self.classes[self.no_tumour], False  # type: ignore[index]
        return self.classes[self.tumour_type(probs)], True

    def tumour_type(self, probs: np.ndarray) -> int:
        """Index of the likeliest tumour class, whatever the "no tumour" probability: the
        answer to "which tumour is it?" asked of a slice that has one."""
        others = [i for i in range(len(self.classes)) if i != self.no_tumour]
        return max(others, key=lambda i: float(probs[i]))

    def verdict(self, array: np.ndarray, distance: float | None) -> dict[str, Any]:
        """In-distribution verdict: input checks on the raw pixels, and the feature
        distance against the validation reference (when the model was calibrated)."""
        reasons = unlike_mri(array)
        cal = self.calibration
        score = None
        if distance is not None and cal.ood_reference:
            score = float(typicality(distance, cal.ood_reference))
            if cal.ood_threshold is not None and distance > cal.ood_threshold:
                reasons.append("its features are far from every training image")
        return {"in_distribution": not reasons, "typicality": score,
                "ood_reasons": reasons}

    def predict_scan(self, scan: Scan, slice_index: int | None = None) -> Prediction:
        """A 2D scan, one slice of a volume, or every axial slice of a volume.

        For a whole volume the class is the tumour-area-weighted mean of slice probabilities
        (all slices equally when no tumour is found) and the mask is 3D.
        """
        if scan.is_volume and slice_index is not None:
            scan = scan.slice(slice_index)
        if not scan.is_volume:
            one = self.predict_batch([scan.array], sources=[scan.path])[0]
            return self._prediction(one.probs, one.mask, scan.spacing,
                                    {**self.verdict(scan.array, one.distance),
                                     **self._uncertainty(one.spread)})

        def per_slice(batch: np.ndarray) -> dict[str, np.ndarray]:
            probs, masks, distance, _ = self._probabilities(list(batch),
                                                            [scan.path] * len(batch))
            dist = np.full(len(batch), np.nan) if distance is None else distance
            return {"mask": np.stack(masks)[:, None], "probs": probs[:, :, None, None],
                    "distance": dist[:, None, None, None]}

        out = over_slices(scan.array, per_slice)
        per_slice_probs = out["probs"][:, 0, 0, :].T  # (slices, K); 1x1 per slice
        masks = np.stack([self._mask_of(p, out["mask"][0][..., z])
                          for z, p in enumerate(per_slice_probs)], axis=-1)
        areas = masks.sum(axis=(0, 1)).astype(float)
        weights = areas if areas.sum() > 0 else np.ones_like(areas)
        probs = np.average(per_slice_probs, axis=0, weights=weights)
        distances = out["distance"][0, 0, 0]
        middle = scan.array[..., scan.array.shape[-1] // 2]
        distance = None if np.isnan(distances).all() else float(np.nanmedian(distances))
        return self._prediction(probs, masks, scan.spacing,
                                {"slices": masks.shape[-1],
                                 "slices_with_tumour": int((areas > 0).sum()),
                                 **self.verdict(middle, distance)})

    def _uncertainty(self, spread: float | None) -> dict[str, Any]:
        """The MC-dropout record of a prediction (empty without MC dropout)."""
        if spread is None:
            return {}
        return {"uncertainty": {"method": "mc-dropout",
                                "samples": mc_samples(self.runner),
                                "mutual_information": spread}}

    def _prediction(self, probs: np.ndarray, mask: np.ndarray, spacing: Any,
                    extra: dict[str, Any] | None = None) -> Prediction:
        label, found = self.decide(probs)
        if found is False:
            mask = np.zeros_like(mask)  # "no tumour found" shows no outline
        assumes = found is None and not self.segments  # a type classifier: tumour presumed
        info: dict[str, Any] = {"segmentation": self.segments,
                                **({"outline": self.outline} if self.outlines else {}),
                                **({"assumes_tumour": True} if assumes else {}),
                                "tumour_found": (assumes or bool(mask.any())) if found is None
                                else found,
                                "tumour_probability": self.tumour_probability(probs),
                                **(extra or {})}
        return Prediction(label=label,
                          probabilities={c: float(p) for c, p in zip(self.classes, probs,
                                                                      strict=True)},
                          mask=mask, spacing=spacing, model_id=self.card.id, extra=info)
