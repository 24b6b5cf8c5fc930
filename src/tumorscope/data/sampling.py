"""Reproducible, resumable sample order: a run interrupted mid-epoch continues exactly.

The order of an epoch and each sample's augmentation seed are functions of
``(seed, epoch)`` only, so a resumed run sees the same batches, augmented the same way, as
an uninterrupted one. :class:`ResumableLoader` reports where in the epoch it stopped
(``state_dict``, stored by Lightning in checkpoints through the stateful-loader protocol; this
module does not import Lightning) and skips what was already trained on when it resumes.
Under DDP each rank takes its own shard of the order (the training shard padded so every
rank runs the same number of steps, as ``DistributedSampler`` does).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochOrder(Sampler[tuple[int, int]]):
    """Yields ``(index, augmentation_seed)`` pairs in an order fixed by ``(seed, epoch)``.

    With ``weights`` (one per sample) an epoch is ``size`` draws with replacement in
    proportion to them, still fixed by ``(seed, epoch)``; without, a permutation.
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True, pad: bool = True,
                 weights: np.ndarray | None = None) -> None:
        self.size, self.seed, self.shuffle, self.pad = size, seed, shuffle, pad
        self.epoch, self.skip = 0, 0
        self.rank, self.world = 0, 1
        if weights is not None and (len(weights) != size or not np.all(weights > 0)):
            raise ValueError("EpochOrder: one positive weight per sample")
        self.p = None if weights is None else np.asarray(weights, float) / np.sum(weights)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def _pairs(self) -> list[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.p is not None:
            order = rng.choice(self.size, self.size, replace=True, p=self.p)
        else:
            order = rng.permutation(self.size) if self.shuffle else np.arange(self.size)
        seeds = rng.integers(0, 2**31 - 1, self.size)
        pairs = [(int(i), int(s)) for i, s in zip(order, seeds, strict=True)]
        if self.pad and self.world > 1 and self.size % self.world:
            pairs += pairs[: self.world - self.size % self.world]
        return pairs[self.rank::self.world]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        skip, self.skip = self.skip, 0  # a resume skips once, then epochs run whole
        return iter(self._pairs()[skip:])

    def __len__(self) -> int:
        if self.pad:
            return -(-self.size // self.world)
        return len(range(self.rank, self.size, self.world))


class ResumableLoader(DataLoader):
    """A DataLoader over :class:`EpochOrder` whose position survives a checkpoint.

    ``batches_done`` is kept up to date by ``training.callbacks.ResumableData``; Lightning stores
    :meth:`state_dict` in its checkpoints and calls :meth:`load_state_dict` on resume.
    """

    def __init__(self, dataset: Dataset, order: EpochOrder, **kwargs: Any) -> None:
        generator = torch.Generator().manual_seed(order.seed)  # keeps the global RNG untouched
        super().__init__(dataset, sampler=order, generator=generator, **kwargs)
        self.order = order
        self.batches_done = 0
        self.epoch_finished = False
        self.sizes: dict[int, int] = {}  # epoch -> dataset.size (progressive resizing)

    def __iter__(self) -> Any:
        # the epoch's input size before the iterator exists: worker processes copy the
        # dataset when it is made, which on a (resumed) run's first epoch is before any hook
        size = self.sizes.get(self.order.epoch)
        if size is not None:
            self.dataset.size = size  # type: ignore[attr-defined]
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.order.epoch, "batches_done": self.batches_done,
                "epoch_finished": int(self.epoch_finished)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if state.get("epoch_finished"):  # saved at the end of an epoch: the next starts whole
            epoch, done = epoch + 1, 0
        self.order.set_epoch(epoch)
        self.order.skip = done * int(self.batch_size or 1)
        self.batches_done = done


@dataclass
class Loaders:
    """What a task's data builder hands to training: loaders and normalisation statistics."""

    train: ResumableLoader
    val: ResumableLoader | None
    stats: tuple[float, float] | None = None
