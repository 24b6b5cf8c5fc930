"""2D augmentation built from the config (albumentations, image and mask together)."""

from __future__ import annotations

import albumentations as A

from tumorscope.config import Augment2DConfig


def build_augment(cfg: Augment2DConfig) -> A.Compose | None:
    """An albumentations pipeline for ``(H, W, C)`` float images in [0, 1], or None."""
    if not cfg.enabled:
        return None
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
    if cfg.elastic:
        steps.append(A.ElasticTransform(alpha=30, sigma=6, p=cfg.elastic))
    if cfg.brightness_contrast:
        steps.append(A.RandomBrightnessContrast(cfg.brightness_contrast, cfg.brightness_contrast,
                                                p=0.5))
    if cfg.gamma:
        steps.append(A.RandomGamma(gamma_limit=(80, 120), p=cfg.gamma))
    return A.Compose(steps) if steps else None
