"""A dataset adversary for training (``loss.source_adversary``): a small head guesses which
dataset a slice came from, given the pooled deepest encoder features and the slice's class;
a gradient reversal trains the encoder to defeat it (domain-adversarial training, Ganin et
al. 2016, conditioned on the class as in Li et al. 2018).

Conditioning matters in a mixed collection: when one dataset has only tumours (figshare) and
the tumour-free slices come from others, "looks like figshare" predicts "tumour". Given the
class, the head can only tell datasets apart by what the class does not explain (skull,
sequence, scanner); the aim is an encoder that drops that, so that an unseen dataset's look
is not read as a class (docs/trust.md measures whether it does: on the leave-LGG-out proxy it
did not). A class found in one dataset only gives the head nothing to learn from the
features, and so no gradient. Training-only: the exported model has no trace of it.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn


class _Reverse(torch.autograd.Function):
    """Identity forward; the gradient times ``-strength`` backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.strength * grad, None


def reverse_gradient(x: torch.Tensor, strength: float) -> torch.Tensor:
    """``x`` unchanged, with its gradient multiplied by ``-strength`` on the way back."""
    return cast(torch.Tensor, _Reverse.apply(x, strength))


def ramp(progress: float) -> float:
    """Ganin et al.'s schedule: 0 at the start of training, rising to about 1 at the end."""
    return 2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0


class SourceAdversary(nn.Module):
    """Dataset logits from ``(features, class)``, behind a gradient reversal."""

    def __init__(self, dim: int, classes: int, sources: int, hidden: int = 128) -> None:
        super().__init__()
        self.classes = classes
        self.head = nn.Sequential(nn.Linear(dim + classes, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, sources))

    def forward(self, features: torch.Tensor, labels: torch.Tensor,
                strength: float) -> torch.Tensor:
        pooled = reverse_gradient(features.mean(dim=(2, 3)), strength)
        onehot = F.one_hot(labels.long(), self.classes).to(pooled.dtype)
        return cast(torch.Tensor, self.head(torch.cat([pooled, onehot], dim=1)))


class FeatureTap:
    """A forward hook keeping the last output of the module it is registered on (the
    encoder's feature maps, deepest last)."""

    def __init__(self) -> None:
        self.features: list[torch.Tensor] | None = None

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self.features = list(output)

    def deepest(self) -> torch.Tensor:
        """The deepest feature map of the last forward pass, released from the tap (so it
        does not keep that pass's graph alive)."""
        if self.features is None:
            raise RuntimeError("the encoder has not run since the tap was last read")
        deepest, self.features = self.features[-1], None
        return deepest
