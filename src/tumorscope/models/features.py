"""Pooled features of any slice model: the vector its decision is made from (for embeddings).

A model says how through one of, in order: a ``pooled_features(x)`` method (capsule and timm
classifiers), a ``pooled(x)`` method whose last output is the pooled features (the calibrated
joint model), or an smp ``encoder`` whose deepest feature map is averaged (the joint model).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tumorscope.errors import ConfigError


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pooled features ``(B, D)`` of images ``x`` ``(B, C, H, W)``; a one-line error when the
    model offers none."""
    method: Any = getattr(model, "pooled_features", None)
    if callable(method):
        return _flat(method(x))
    pooled: Any = getattr(model, "pooled", None)
    if callable(pooled):
        return _flat(pooled(x)[-1])
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, nn.Module) and hasattr(encoder, "out_channels"):  # an smp encoder
        return _flat(encoder(x)[-1].mean(dim=(2, 3)))
    raise ConfigError(type(model).__name__, "this model offers no pooled features (no "
                      "pooled_features(x), pooled(x) or smp encoder); it cannot be embedded")


def _flat(features: torch.Tensor) -> torch.Tensor:
    """Features as ``(B, D)``."""
    return features.flatten(1)
