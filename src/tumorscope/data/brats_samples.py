"""Training samples from the BraTS cache: 2D axial patches (the index ``prepare`` kept) or 3D
random crops with foreground-weighted centres; targets are the nested regions WT, TC, ET.

Every sample is a function of ``(index, seed)`` (see sampling.py), so a resumed run draws
the same crops and augmentations. Validation samples ignore the epoch's seed: the same crops
every epoch, so validation scores are comparable across epochs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from tumorscope.config import BratsExperiment
from tumorscope.data.brats import CachedCase, build_cache, read_cached
from tumorscope.data.sampling import EpochOrder, Loaders, ResumableLoader
from tumorscope.data.splits import Split
from tumorscope.io.brats import REGIONS


def region_targets(labels: np.ndarray) -> np.ndarray:
    """Internal labels -> ``(3, ...)`` float32 WT, TC, ET masks."""
    return np.stack([np.isin(labels, members) for members in REGIONS.values()]).astype(
        np.float32)


def crop(array: np.ndarray, start: tuple[int, ...], size: tuple[int, ...]) -> np.ndarray:
    """``array[..., start:start+size]`` over the trailing axes, zero-padded where the volume
    is smaller than the crop."""
    spatial = array.shape[-len(size):]
    out = np.zeros((*array.shape[:-len(size)], *size), array.dtype)
    src = tuple(slice(max(s, 0), min(s + n, d)) for s, n, d in zip(start, size, spatial,
                                                                    strict=True))
    dst = tuple(slice(a.start - s, a.stop - s) for a, s in zip(src, start, strict=True))
    lead: tuple[slice, ...] = (slice(None),) * (array.ndim - len(size))
    out[lead + dst] = array[lead + src]
    return out


class BratsSamples(Dataset):
    """2D patches (``patch`` of 2 sizes) or 3D crops (3 sizes) from cached cases."""

    def __init__(self, cases: list[CachedCase], patch: list[int], samples_per_case: int,
                 foreground_ratio: float, augment: Any = None, train: bool = True) -> None:
        self.cases, self.patch = cases, tuple(patch)
        self.samples_per_case, self.foreground_ratio = samples_per_case, foreground_ratio
        self.augment, self.train = augment, train
        if len(self.patch) == 2:
            self.items = [(c, *map(int, p)) for c, case in enumerate(cases) for p in case.patches]
        else:
            self.items = [(c, k, 0, 0) for c in range(len(cases)) for k in range(samples_per_case)]

    def __len__(self) -> int:
        return len(self.items)

    def _crop_start(self, case: CachedCase, rng: np.random.Generator) -> tuple[int, ...]:
        tumour = np.argwhere(case.labels > 0)
        if len(tumour) and rng.random() < self.foreground_ratio:
            centre = tumour[rng.integers(len(tumour))]
        else:
            centre = np.array([rng.integers(n) for n in case.labels.shape])
        return tuple(int(c - n // 2) for c, n in zip(centre, self.patch, strict=True))

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        if not self.train:
            seed = index  # the same validation crops every epoch
        c, a, b, d = self.items[index]
        case = self.cases[c]
        rng = np.random.default_rng(seed)
        if len(self.patch) == 2:  # axial slice a, patch corner (b, d)
            image = crop(case.image[..., a], (b, d), self.patch)[..., None]
            labels = crop(case.labels[..., a], (b, d), self.patch)[..., None]
        else:
            start = self._crop_start(case, rng)
            image, labels = crop(case.image, start, self.patch), crop(case.labels, start,
                                                                      self.patch)
        if self.augment is not None and self.train:
            from tumorscope.transforms.augment3d import apply_augment3d

            image, labels = apply_augment3d(self.augment, image, labels, seed)
        if len(self.patch) == 2:
            image, labels = image[..., 0], labels[..., 0]
        return {"image": torch.from_numpy(np.ascontiguousarray(image, np.float32)),
                "target": torch.from_numpy(region_targets(labels)), "index": index}


def brats_loaders(cfg: BratsExperiment, split: Split) -> Loaders:
    """Build (or reuse) the cache for the split's cases, then resumable loaders."""
    from tumorscope.transforms.augment3d import build_augment3d

    needed = [*split.train, *split.val]
    folder = build_cache(cfg, needed)
    m, p = cfg.model, cfg.prep

    def samples(records: list[Any], train: bool) -> BratsSamples:
        cases = [read_cached(folder / f"{r.id}.h5") for r in records]
        augment = build_augment3d(cfg.augment, two_d=m.family == "2d") if train else None
        return BratsSamples(cases, m.patch_size, p.samples_per_case, p.foreground_ratio,
                            augment, train)

    kw: dict[str, Any] = {"batch_size": cfg.trainer.batch_size,
                          "num_workers": cfg.data.num_workers,
                          "persistent_workers": cfg.data.num_workers > 0}
    train_ds = samples(split.train, True)
    train = ResumableLoader(train_ds, EpochOrder(len(train_ds), cfg.training_seed),
                            drop_last=len(train_ds) > cfg.trainer.batch_size, **kw)
    if not split.val:
        return Loaders(train, None)
    val_ds = samples(split.val, False)
    order = EpochOrder(len(val_ds), cfg.training_seed, shuffle=False, pad=False)
    val = ResumableLoader(val_ds, order, **kw)
    return Loaders(train, val)
