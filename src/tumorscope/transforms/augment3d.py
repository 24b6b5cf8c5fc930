"""BraTS augmentation from the config (TorchIO), on modalities and labels together.

Seeded per sample (``torch`` RNG forked), so a resumed run augments exactly as an
uninterrupted one. For 2D patches (depth 1) only in-plane transforms are used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tumorscope.config import Augment3DConfig


def build_augment3d(cfg: Augment3DConfig, two_d: bool = False) -> Any:
    """A ``tio.Compose`` (or None when disabled or empty)."""
    if not cfg.enabled:
        return None
    import torchio as tio

    steps: list[Any] = []
    if cfg.flip:
        steps.append(tio.RandomFlip(axes=(0,), flip_probability=cfg.flip))
    if cfg.affine:
        steps.append(tio.RandomAffine(scales=0.1, degrees=(0, 0, 0, 0, -12, 12) if two_d
                                      else 10, p=cfg.affine))
    if cfg.anisotropy and not two_d:
        steps.append(tio.RandomAnisotropy(downsampling=(1.5, 3), p=cfg.anisotropy))
    if cfg.elastic and not two_d:
        steps.append(tio.RandomElasticDeformation(max_displacement=5, p=cfg.elastic))
    if cfg.motion and not two_d:
        steps.append(tio.RandomMotion(degrees=5, translation=5, p=cfg.motion))
    if cfg.ghosting and not two_d:
        steps.append(tio.RandomGhosting(intensity=(0.2, 0.5), p=cfg.ghosting))
    if cfg.bias_field:
        steps.append(tio.RandomBiasField(coefficients=0.3, p=cfg.bias_field))
    if cfg.gamma:
        steps.append(tio.RandomGamma(log_gamma=(-0.2, 0.2), p=cfg.gamma))
    if cfg.noise:
        steps.append(tio.RandomNoise(std=(0, 0.1), p=cfg.noise))
    return tio.Compose(steps) if steps else None


def apply_augment3d(transform: Any, image: np.ndarray, labels: np.ndarray, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(C, X, Y, Z)`` image and ``(X, Y, Z)`` labels through ``transform``, seeded."""
    import torchio as tio

    subject = tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(image)),
                          labels=tio.LabelMap(tensor=torch.from_numpy(labels[None])))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = transform(subject)
    return out["image"].data.numpy(), out["labels"].data.numpy()[0].astype(labels.dtype)
