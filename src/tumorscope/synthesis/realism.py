"""How real do synthetic slices look to a model: the Fréchet distance (as in FID) between
two sets of feature vectors, e.g. a classifier's pooled features of synthetic slices and of
held-out real ones."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from tumorscope.data.records import Record

Extractor = Callable[[torch.Tensor], torch.Tensor]


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray, eps: float = 1e-6
                     ) -> float:
    """``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` of two ``(N, D)`` feature sets
    (Gaussians fitted to each); ``eps`` on the diagonal keeps a singular product finite."""
    from scipy import linalg

    a, b = (np.asarray(f, dtype=np.float64) for f in (features_a, features_b))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, D) with the same D: {a.shape}, {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("each feature set needs at least two rows for a covariance")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():
        offset = np.eye(len(cov_a)) * eps
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    trace = np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(np.real(root))
    return max(0.0, float(np.sum((mu_a - mu_b) ** 2) + trace))


def record_images(records: Sequence[Record], size: int, channels: int = 1) -> np.ndarray:
    """``(N, channels, size, size)`` float32 slices in [0, 1] (real or synthetic records)."""
    from tumorscope.data.slices import load_record
    from tumorscope.transforms.slice2d import load_model_input

    return np.stack([load_model_input(load_record(r)[0], channels, size, r.image)
                     for r in records])


@torch.no_grad()
def image_features(images: np.ndarray, extract: Extractor, batch_size: int = 32,
                   device: str = "cpu") -> np.ndarray:
    """``(N, D)`` features of ``(N, C, H, W)`` images from ``extract`` (any torch callable
    returning pooled ``(B, D)`` features, e.g. ``model.pooled_features``; it applies its
    model's normalisation itself)."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size],
                                                      dtype=np.float32)).to(device)
        feats = extract(batch)
        out.append(feats.reshape(len(batch), -1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
