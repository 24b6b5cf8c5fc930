"""``tumorscope robustness``: how models hold up when the scanner or the export changes, and
whether they flag what is not brain MRI at all.

1. **Corruptions**: every held-out slice (an even spread of the first model's test fold) is
   degraded by one artefact at a time (bias field, ghosting, motion, spike, blur, noise, lower
   resolution, JPEG, gamma; the training augmentation's transforms, each always on, seeded),
   or framed as images from elsewhere often are (cropped tight to the head, on a wide canvas,
   cropped to landscape, zoomed out; the mask moves with the pixels), and each model is
   scored on it: accuracy of the decided label, tumour-type accuracy (the likeliest tumour
   class on tumour slices, whatever the "no tumour" decision, so that "is it a tumour" and
   "which one" are read apart), tumour Dice, detection AUROC and the share flagged as
   unfamiliar.
2. **Probe images** that are not MRI (noise, text pages, textures, colour photographs, nearly
   blank frames), generated here: the share each model flags as unlike its training data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tumorscope.config import Augment2DConfig
from tumorscope.data.prepare import prepare_split, spread
from tumorscope.data.records import Record
from tumorscope.data.slices import load_record
from tumorscope.inference.joint import JointInferer
from tumorscope.inference.predictor import Predictor
from tumorscope.metrics import per_image_dice
from tumorscope.progress import track
from tumorscope.transforms.augment import SliceAugment
from tumorscope.transforms.framing import head_extent
from tumorscope.transforms.slice2d import scale_intensity
from tumorscope.uncertainty import auroc

NEUTRAL = {"hflip": 0.0, "rotate": 0.0, "scale": 0.0, "shift": 0.0, "brightness_contrast": 0.0}
CORRUPTIONS: dict[str, dict[str, float]] = {
    "none": {}, "bias field": {"bias_field": 1}, "ghosting": {"ghosting": 1},
    "motion": {"motion": 1}, "spike": {"spike": 1}, "blur": {"blur": 1}, "noise": {"noise": 1},
    "low resolution": {"downscale": 1}, "JPEG": {"jpeg": 1}, "gamma": {"gamma": 1},
    "intensity curve": {"intensity_remap": 1}, "skull stripped": {"skull_strip": 1},
}
Pair = tuple[np.ndarray, np.ndarray]  # (C, H, W) pixels in [0, 1], (H, W) mask


def _head_crop(image: np.ndarray, mask: np.ndarray) -> Pair:
    """Cropped to the head's bounding box (the way many public 2D collections ship)."""
    gray = image.mean(axis=0)
    rows, cols = head_extent(gray, 0), head_extent(gray, 1)
    if rows is None or cols is None:
        return image, mask
    box = (slice(rows[0], rows[1] + 1), slice(cols[0], cols[1] + 1))
    return image[:, box[0], box[1]], mask[box]


def _wide_canvas(image: np.ndarray, mask: np.ndarray) -> Pair:
    """Centred on a 16:9 dark canvas (a screenshot, a slide)."""
    h, w = mask.shape
    extra = max(0, round(h * 16 / 9) - w)
    sides = (extra // 2, extra - extra // 2)
    return np.pad(image, ((0, 0), (0, 0), sides)), np.pad(mask, ((0, 0), sides))


def _landscape(image: np.ndarray, mask: np.ndarray) -> Pair:
    """The middle rows kept to a 4:3 landscape frame."""
    h, w = mask.shape
    keep = min(h, round(w * 3 / 4))
    top = (h - keep) // 2
    return image[:, top:top + keep], mask[top:top + keep]


def _zoomed_out(image: np.ndarray, mask: np.ndarray) -> Pair:
    """A dark border a quarter of the side wide all round: the head at two thirds of its
    size in the frame (a wider field of view)."""
    border = max(1, round(mask.shape[0] / 4))
    return (np.pad(image, ((0, 0), (border, border), (border, border))),
            np.pad(mask, border))


REFRAMES: dict[str, Callable[[np.ndarray, np.ndarray], Pair]] = {
    "cropped to the head": _head_crop, "wide canvas": _wide_canvas,
    "landscape crop": _landscape, "zoomed out": _zoomed_out}
NAMES = (*CORRUPTIONS, *REFRAMES)  # every corruption, by name
PROBES = ("uniform noise", "text page", "texture", "colour photograph", "nearly blank")


def corrupt(pixels: np.ndarray, name: str, seed: int, mask: np.ndarray | None = None) -> Pair:
    """``(C, H, W)`` raw pixels degraded by corruption ``name`` (in [0, 1]) and the tumour
    mask moved with them (empty when not given); a given mask also keeps skull stripping
    from cutting a tumour away."""
    image = scale_intensity(pixels)
    tumour = np.zeros(image.shape[1:], np.uint8) if mask is None else mask.astype(np.uint8)
    if name in REFRAMES:
        return REFRAMES[name](image, tumour)
    if not CORRUPTIONS[name]:
        return image, tumour
    augment = SliceAugment(Augment2DConfig.model_validate({**NEUTRAL, **CORRUPTIONS[name]}))
    augment.set_random_seed(seed)
    out = augment(image=np.ascontiguousarray(np.moveaxis(image, 0, -1)), mask=tumour)
    hwc = out["image"] if out["image"].ndim == 3 else out["image"][..., None]
    return np.moveaxis(hwc, -1, 0), out["mask"]


def probe(name: str, rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A generated image that is not brain MRI, ``(C, H, W)`` 0-255."""
    from PIL import Image, ImageDraw

    if name == "uniform noise":
        return rng.uniform(0, 255, (1, size, size))
    if name == "text page":
        page = Image.new("L", (size, size), int(rng.integers(200, 256)))
        draw = ImageDraw.Draw(page)
        for i in range(size // 16):
            draw.text((6, 4 + 16 * i), "".join(rng.choice(list("abcdefgh 0123456789"), 30)),
                      fill=int(rng.integers(0, 60)))
        return np.asarray(page, np.float32)[None]
    if name == "texture":
        x = np.linspace(0, rng.uniform(4, 12) * np.pi, size)
        wave = np.sin(x[None] * rng.uniform(0.5, 2)) * np.cos(x[:, None] * rng.uniform(0.5, 2))
        return (128 + 70 * wave + rng.normal(0, 25, (size, size))).clip(0, 255)[None]
    if name == "colour photograph":
        base = rng.uniform(0, 255, 3)
        ramp = np.linspace(0, 1, size)
        return np.stack([(base[c] * (0.6 + 0.4 * ramp[None] * ramp[:, None]) +
                          rng.normal(0, 15, (size, size))).clip(0, 255) for c in range(3)])
    if name == "nearly blank":
        image = np.zeros((1, size, size))
        image[0, rng.integers(0, size, 5), rng.integers(0, size, 5)] = 255
        return image
    raise ValueError(name)


@dataclass
class ModelScores:
    """One model's rows: corruption -> metrics, probe -> flagged share."""

    model_id: str
    corruptions: dict[str, dict[str, float | None]] = field(default_factory=dict)
    probes: dict[str, float] = field(default_factory=dict)


def _score(inferer: JointInferer, records: list[Record], arrays: list[np.ndarray],
           masks: list[np.ndarray]) -> dict[str, float | None]:
    labels, preds, types, tumour_p, dice, flagged = [], [], [], [], [], []
    classes = inferer.classes
    outputs = inferer.predict_batch(  # batches of 16, as evaluation runs
        arrays, outlines=inferer.outlines_of([r.outline for r in records]))
    for record, array, mask, (p, m, distance, _) in zip(records, arrays, masks, outputs,
                                                        strict=True):
        label, found = inferer.decide(p)
        labels.append(record.label)
        preds.append(classes.index(label))
        types.append(inferer.tumour_type(p))
        tumour_p.append(inferer.tumour_probability(p))
        m = np.zeros_like(m) if found is False else m
        outlined = mask.any() and inferer.segments  # a classifier has no Dice
        dice.append(float(per_image_dice([m], [mask])[0]) if outlined else np.nan)
        flagged.append(not inferer.verdict(array, distance)["in_distribution"])
    labels_a, preds_a = np.array(labels), np.array(preds)
    detect = None
    tumours = labels_a != inferer.no_tumour  # every slice for a model without the class
    if inferer.no_tumour is not None:
        detect = auroc(np.array(tumour_p, float), tumours)
    d = np.array(dice)
    typed = np.array(types)[tumours] == labels_a[tumours]
    return {"accuracy": float((labels_a == preds_a).mean()),
            "type_accuracy": float(typed.mean()) if typed.size else None,
            "dice_mean_tumour": float(np.nanmean(d)) if np.isfinite(d).any() else None,
            "detection_auroc": detect, "flagged": float(np.mean(flagged))}


def run_robustness(checkpoints: list[Path], limit: int = 300, probes_per_kind: int = 20,
                   data_root: str | None = None, seed: int = 0,
                   sources: list[str] | None = None,
                   corruptions: list[str] | None = None) -> list[ModelScores]:
    """Score every model on the first model's held-out fold (of ``sources`` of a mixed
    collection when given, e.g. one a leave-one-dataset-out model never saw) under each
    corruption (or those named), and on the probe images."""
    predictors = [Predictor.from_checkpoint(c, backend="torch") for c in checkpoints]
    cfg = predictors[0].card.experiment(f"{checkpoints[0]} (model card)")
    if sources is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"sources": sources})})
    _, split = prepare_split(cfg, data_root,
                             sources_setting="--sources" if sources is not None else "data.sources")
    records = spread(split.test, limit)
    loaded = [load_record(r) for r in records]
    results = [ModelScores(p.model_id) for p in predictors]
    for name in track(corruptions or list(NAMES), "corruptions"):
        arrays, masks = zip(*(corrupt(a, name, seed + i, m) for i, (a, m) in enumerate(loaded)),
                            strict=True)
        for predictor, scores in zip(predictors, results, strict=True):
            inferer = predictor.inferer
            assert isinstance(inferer, JointInferer)
            keep = [i for i, r in enumerate(records) if r.label < len(inferer.classes)]
            scores.corruptions[name] = _score(inferer, [records[i] for i in keep],
                                              [arrays[i] for i in keep],
                                              [masks[i] for i in keep])
    rng = np.random.default_rng(seed)
    images = {k: [probe(k, rng) for _ in range(probes_per_kind)] for k in PROBES}
    for predictor, scores in zip(predictors, results, strict=True):
        inferer = predictor.inferer
        assert isinstance(inferer, JointInferer)
        for kind, batch in images.items():
            verdicts = [inferer.verdict(a, out.distance)["in_distribution"]
                        for a, out in zip(batch, inferer.predict_batch(batch), strict=True)]
            scores.probes[kind] = 1.0 - float(np.mean(verdicts))
    return results


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_markdown(results: list[ModelScores], limit: int, command: str) -> str:
    """Tables for docs: per corruption and model, then the probe flag rates."""
    lines = ["| corruption | " + " | ".join(f"`{r.model_id}` acc / type / Dice / AUROC / flagged"
                                             for r in results) + " |",
             "| --- |" + " --- |" * len(results)]
    for name in [c for c in NAMES if c in results[0].corruptions]:
        cells = []
        for r in results:
            c = r.corruptions[name]
            cells.append(f"{_fmt(c['accuracy'])} / {_fmt(c.get('type_accuracy'))} / "
                         f"{_fmt(c['dice_mean_tumour'])} / "
                         f"{_fmt(c['detection_auroc'])} / {_fmt(c['flagged'])}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    probe_lines = ["| probe images | " + " | ".join(f"`{r.model_id}` flagged"
                                                    for r in results) + " |",
                   "| --- |" + " --- |" * len(results)]
    probe_lines += [f"| {k} | " + " | ".join(f"{r.probes[k]:.0%}" for r in results) + " |"
                    for k in PROBES]
    return (f"Held-out slices: {limit} spread over the first model's test fold (accuracy and "
            "Dice on the slices whose class the model knows; type: the likeliest tumour "
            "class on tumour slices, whatever the \"no tumour\" decision).\n\n" + "\n".join(lines) +
            "\n\n" + "\n".join(probe_lines) + f"\n\nCommand:\n```\n{command}\n```\n")
