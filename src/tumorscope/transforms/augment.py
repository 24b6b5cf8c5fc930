"""2D augmentation built from the config: albumentations (image and mask together) for
geometry, contrast and image degradation, TorchIO for MRI acquisition artefacts (bias field,
ghosting, motion, spike), each with its own probability.

Order: skull stripping -> geometry and contrast -> random intensity curve -> MRI artefacts
-> blur, noise, lower resolution -> JPEG re-compression (last, as when a scan is exported to a 2D
collection). Seeded per sample.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np
import torch

from tumorscope.config import Augment2DConfig
from tumorscope.transforms.brain_mask import brain_mask
from tumorscope.transforms.slice2d import scale_intensity

ARTEFACTS = ("bias_field", "ghosting", "motion", "spike")
DEGRADATIONS = ("blur", "noise", "downscale", "jpeg")
ZOOM_OUT = (0.55, 0.85)  # ``zoom_out``'s shrink: the head at 55-85% of its size
KEEP_TUMOUR = 0.8  # skull stripping is skipped on a slice where it would cut more tumour


def _geometry_and_contrast(cfg: Augment2DConfig) -> list[A.BasicTransform]:
    steps: list[A.BasicTransform] = []
    if cfg.hflip:
        steps.append(A.HorizontalFlip(p=cfg.hflip))
    if cfg.vflip:
        steps.append(A.VerticalFlip(p=cfg.vflip))
    if cfg.rotate or cfg.scale or cfg.shift:
        steps.append(A.Affine(rotate=(-cfg.rotate, cfg.rotate),
                              scale=(1 - cfg.scale, 1 + cfg.scale),
                              translate_percent=(-cfg.shift, cfg.shift),
                              border_mode=0, p=0.7))
    if cfg.zoom_out:
        steps.append(A.Affine(scale=ZOOM_OUT, border_mode=0, p=cfg.zoom_out))
    if cfg.elastic:
        steps.append(A.ElasticTransform(alpha=30, sigma=6, p=cfg.elastic))
    if cfg.brightness_contrast:
        steps.append(A.RandomBrightnessContrast(cfg.brightness_contrast, cfg.brightness_contrast,
                                                p=0.5))
    if cfg.gamma:
        steps.append(A.RandomGamma(gamma_limit=(70, 150), p=cfg.gamma))
    return steps


def _degradations(cfg: Augment2DConfig) -> list[A.BasicTransform]:
    steps: list[A.BasicTransform] = []
    if cfg.blur:
        steps.append(A.GaussianBlur(blur_limit=(3, 5), p=cfg.blur))
    if cfg.noise:
        steps.append(A.GaussNoise(std_range=(0.01, 0.05), p=cfg.noise))
    if cfg.downscale:
        steps.append(A.Downscale(scale_range=(0.4, 0.8), p=cfg.downscale))
    if cfg.jpeg:
        steps.append(A.ImageCompression(quality_range=(35, 90), p=cfg.jpeg))
    return steps


def _artefacts(cfg: Augment2DConfig) -> Any:
    """A TorchIO pipeline of MRI artefacts for a ``(C, H, W, 1)`` image, or None."""
    if not any(getattr(cfg, name) for name in ARTEFACTS):
        return None
    import torchio as tio

    steps: list[Any] = []
    if cfg.bias_field:
        steps.append(tio.RandomBiasField(coefficients=0.4, p=cfg.bias_field))
    if cfg.ghosting:
        steps.append(tio.RandomGhosting(num_ghosts=(2, 6), axes=(0, 1), intensity=(0.1, 0.4),
                                        p=cfg.ghosting))
    if cfg.motion:
        steps.append(tio.RandomMotion(degrees=4, translation=4, num_transforms=2,
                                      p=cfg.motion))
    if cfg.spike:
        steps.append(tio.RandomSpike(num_spikes=1, intensity=(0.05, 0.2), p=cfg.spike))
    return tio.Compose(steps)


REMAP_POINTS = 5  # control points of the random intensity curve, 0 and 1 included


def intensity_remap(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` in [0, 1] through a random piecewise-linear curve: the curve's values at
    evenly spaced inputs are uniform in [0, 1] (so it may invert contrast, as T1 vs T2 does),
    except 0 -> 0, which keeps the background dark; rescaled to a maximum of 1."""
    xs = np.linspace(0.0, 1.0, REMAP_POINTS)
    ys = np.concatenate([[0.0], rng.uniform(0.0, 1.0, REMAP_POINTS - 1)])
    out = np.interp(image, xs, ys).astype(np.float32)
    peak = float(out.max())
    return out / peak if peak > 0 else out


def skull_strip(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (H, W, C) in [0, 1] and its tumour ``mask`` with everything outside the brain
    mask set to 0; unchanged when the brain mask would keep less than ``KEEP_TUMOUR`` of the
    tumour (the slice's label would no longer hold)."""
    keep = brain_mask(image[..., 0])
    tumour = mask > 0
    if tumour.any() and (tumour & keep).sum() < KEEP_TUMOUR * tumour.sum():
        return image, mask
    return image * keep[..., None].astype(image.dtype), np.where(keep, mask, 0).astype(mask.dtype)


class SliceAugment:
    """Callable like an albumentations ``Compose`` (``image`` (H, W, C) float in [0, 1],
    ``mask``), with ``set_random_seed`` making one sample's augmentation reproducible."""

    def __init__(self, cfg: Augment2DConfig) -> None:
        self.first = A.Compose(_geometry_and_contrast(cfg))
        self.artefacts = _artefacts(cfg)
        degradations = _degradations(cfg)
        self.last = A.Compose(degradations) if degradations else None
        self.remap = cfg.intensity_remap
        self.strip = cfg.skull_strip
        self.seed = 0

    def set_random_seed(self, seed: int) -> None:
        """Fix the randomness of the next call."""
        self.seed = int(seed)
        self.first.set_random_seed(self.seed)
        if self.last is not None:
            self.last.set_random_seed(self.seed + 1)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        if self.strip and np.random.default_rng([self.seed, 11]).random() < self.strip:
            image, mask = skull_strip(image if image.ndim == 3 else image[..., None], mask)
        out = self.first(image=image, mask=mask)
        hwc = out["image"] if out["image"].ndim == 3 else out["image"][..., None]
        if self.remap:
            rng = np.random.default_rng([self.seed, 7])
            if rng.random() < self.remap:
                hwc = intensity_remap(np.clip(hwc, 0.0, 1.0), rng)
        if self.artefacts is not None:
            import torchio as tio

            tensor = torch.from_numpy(np.ascontiguousarray(np.moveaxis(hwc, -1, 0)))[..., None]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                moved = self.artefacts(tio.ScalarImage(tensor=tensor.float())).data
            hwc = np.moveaxis(scale_intensity(np.clip(moved[..., 0].numpy(), 0, None)), 0, -1)
        if self.last is not None:
            hwc = self.last(image=np.ascontiguousarray(hwc, dtype=np.float32))["image"]
        return {"image": hwc, "mask": out["mask"]}


def build_augment(cfg: Augment2DConfig) -> SliceAugment | None:
    """The configured 2D augmentation, or None when disabled or empty."""
    if not cfg.enabled:
        return None
    augment = SliceAugment(cfg)
    if (not augment.first.transforms and augment.artefacts is None and augment.last is None
            and not augment.remap and not augment.strip):
        return None
    return augment
