"""Torch dataset of annotated 2D slices (read -> [0,1] -> resize -> augment -> normalise) and
the training loaders of 2D slice tasks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from tumorscope.config import ClassifyExperiment, JointExperiment
from tumorscope.data.pack import SlicePack, read_pack
from tumorscope.data.prepare import source_weights
from tumorscope.data.records import Record
from tumorscope.data.sampling import EpochOrder, Loaders, ResumableLoader
from tumorscope.data.splits import Split
from tumorscope.errors import ConfigError, ScanReadError
from tumorscope.io import read_mask, read_scan
from tumorscope.progress import track
from tumorscope.transforms.framing import HEAD_SQUARE
from tumorscope.transforms.pseudo_healthy import mirror_healthy
from tumorscope.transforms.slice2d import (
    SlicePreprocessing,
    model_pair,
    normalise,
    resize_mask,
)


def load_record(record: Record) -> tuple[np.ndarray, np.ndarray]:
    """Raw ``(C, H, W)`` pixels and the ``(H, W)`` bool mask of one record.

    Only ``record.channel`` is kept when it is set. The mask comes from ``record.mask``,
    else from the image file itself (``.mat``), else is empty. Shape mismatches raise an
    error naming the mask file.
    """
    scan = read_scan(record.image)
    pixels = scan.array if record.channel is None else scan.array[record.channel:
                                                                  record.channel + 1]
    if record.mask is not None:
        mask = read_mask(record.mask, expected_shape=scan.spatial_shape)
    elif scan.mask is not None:
        mask = scan.mask.astype(bool)
    else:
        mask = np.zeros(scan.spatial_shape, dtype=bool)
    if record.synthesis == "mirror":
        try:
            pixels = mirror_healthy(pixels, mask)
        except ValueError as err:
            raise ScanReadError(record.image, str(err)) from None
        mask = np.zeros_like(mask)
    return pixels, mask


NO_DATASET = ("these slices carry no dataset name: it needs a mixed collection "
              "(data.dataset: mri-mix)")


def dataset_indices(records: Sequence[Record], names: list[str] | None,
                    setting: str) -> list[int]:
    """Each record's position of its dataset (``Record.outline``: a derived slice counts as
    the dataset it came from) in ``names``; all 0 without names. A record of a dataset not
    named, or of no named dataset (not a mixed collection), is a one-line error blaming
    ``setting``."""
    if not names:
        return [0] * len(records)
    if any(r.outline is None for r in records):
        raise ConfigError(setting, NO_DATASET)
    missing = sorted({str(r.outline) for r in records if r.outline not in names})
    if missing:
        raise ConfigError(setting, f"slices of {missing} are not among {names} (it names "
                          "the datasets of a mixed collection)")
    return [names.index(str(r.outline)) for r in records]


def typed_flags(records: Sequence[Record], names: list[str] | None) -> list[bool]:
    """Whether each record's label teaches its tumour type: its dataset (``Record.outline``)
    is among ``names``; all True without names."""
    if names is None:
        return [True] * len(records)
    return [r.outline in names for r in records]


def check_type_sources(records: Sequence[Record], names: list[str] | None) -> None:
    """A ``loss.type_sources`` name that is none of the records' datasets is a one-line
    error (a typo would otherwise silently teach no tumour type at all)."""
    present = sorted({str(r.outline) for r in records if r.outline is not None})
    if names and not present:
        raise ConfigError("loss.type_sources", NO_DATASET)
    unknown = sorted(set(names or []) - set(present))
    if unknown:
        raise ConfigError("loss.type_sources", f"{unknown} are not datasets of these slices "
                          f"(datasets: {present})")


def outline_indices(records: Sequence[Record], outlines: list[str] | None) -> list[int]:
    """Each record's mask output: the position of its dataset in ``outlines``."""
    return dataset_indices(records, outlines, "model.outlines")


class SliceDataset(Dataset):
    """Samples ``{"image": (C,S,S) float, "mask": (1,S,S) float, "label": int, "index": int,
    "outline": int, "source": int, "typed": bool}`` (``outline``: which mask output learns
    this slice's mask; ``source``: its dataset's position in ``sources``, 0 without;
    ``typed``: whether its label teaches the tumour type, see ``typed_flags``)."""

    def __init__(self, records: Sequence[Record], channels: int, size: int, normalization: str,
                 stats: tuple[float, float] | None = None, augment: Any = None,
                 cache: bool = False, outlines: list[str] | None = None,
                 pack: SlicePack | None = None, sources: list[str] | None = None,
                 typed_sources: list[str] | None = None, framing: str = HEAD_SQUARE) -> None:
        self.records = list(records)
        self.pack = pack
        self.outline = outline_indices(self.records, outlines)
        self.source = dataset_indices(self.records, sources, "loss.source_adversary.sources")
        self.typed = typed_flags(self.records, typed_sources)
        self.channels, self.size, self.framing = channels, size, framing
        self.normalization, self.stats = normalization, stats
        self.augment = augment
        # keyed by size too: progressive resizing changes ``size`` between epochs
        self._cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] | None = (
            {} if cache else None)

    def __len__(self) -> int:
        return len(self.records)

    def resized(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(C,S,S)`` float image in [0,1] and ``(S,S)`` uint8 mask, cached when enabled."""
        key = (index, self.size)
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        record = self.records[index]
        if self.pack is not None:
            item = self.pack.item(record)
        else:
            image, mask = model_pair(*load_record(record), self.channels, self.size,
                                     record.image, self.framing)
            item = image.astype(np.float16), mask
        if self._cache is not None:
            self._cache[key] = item
        return item

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """One sample; ``key`` is an index or ``(index, augmentation_seed)`` (see sampling.py)."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        image, mask = self.resized(index)
        image = image.astype(np.float32)
        if self.augment is not None:
            if seed is not None:
                self.augment.set_random_seed(seed)
            out = self.augment(image=np.moveaxis(image, 0, -1), mask=mask)
            hwc = out["image"]
            image = hwc[None] if hwc.ndim == 2 else np.moveaxis(hwc, -1, 0)
            mask = out["mask"]
        image = normalise(np.ascontiguousarray(image, dtype=np.float32), self.normalization,
                          self.stats)
        return {"image": torch.from_numpy(image),
                "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None],
                "label": int(self.records[index].label), "index": index,
                "outline": self.outline[index], "source": self.source[index],
                "typed": self.typed[index]}


def slice_batches(pre: SlicePreprocessing, records: list[Record], what: str,
                  batch_size: int = 32) -> Iterator[tuple[torch.Tensor, list[np.ndarray]]]:
    """Model inputs ``(B, C, S, S)`` of ``records`` in order with their reference masks as
    the model's ``(S, S)`` output sees them (framed and resized alike, read in the same
    pass), with a progress bar."""
    for start in track(range(0, len(records), batch_size), what,
                       total=-(-len(records) // batch_size)):
        inputs, references = [], []
        for r in records[start:start + batch_size]:
            pixels, mask = load_record(r)
            image, frame = pre.framed(pixels, r.image)
            inputs.append(image)
            references.append(resize_mask(frame.crop(mask), pre.input_size))
        yield torch.from_numpy(np.stack(inputs)), references


def dataset_stats(dataset: SliceDataset, max_images: int = 500) -> tuple[float, float]:
    """Mean and std of [0,1]-scaled training images (for "global" normalisation)."""
    step = max(1, len(dataset) // max_images)
    values = [dataset.resized(i)[0].astype(np.float32) for i in range(0, len(dataset), step)]
    stacked = np.stack(values)
    return float(stacked.mean()), float(stacked.std())


def slice_loaders(cfg: JointExperiment | ClassifyExperiment, split: Split) -> Loaders:
    """Resumable training and validation loaders over the split's slices; the training set
    is augmented, and its mean/std computed when the model uses global normalisation."""
    from tumorscope.transforms.augment import build_augment

    m = cfg.model
    outlines = getattr(m, "outlines", None)
    adversary = getattr(cfg.loss, "source_adversary", None)
    sources = adversary.sources if adversary is not None else None
    typed = getattr(cfg.loss, "type_sources", None)
    check_type_sources([*split.train, *split.val], typed)
    # persistent workers would keep the dataset of the first epoch, at its input size
    resizing = any(s.input_size is not None for s in getattr(cfg, "stages", []))
    pack = read_pack(cfg) if cfg.data.pack else None
    cache = cfg.data.cache and pack is None  # a pack is already in memory
    train_ds = SliceDataset(split.train, m.in_channels, m.input_size, m.normalization,
                            augment=build_augment(cfg.augment), cache=cache,
                            outlines=outlines, pack=pack, sources=sources,
                            typed_sources=typed, framing=m.framing)
    stats = dataset_stats(train_ds) if m.normalization == "global" else None
    train_ds.stats = stats
    kw: dict[str, Any] = {"batch_size": cfg.trainer.batch_size, "num_workers": cfg.data.num_workers,
                          "persistent_workers": cfg.data.num_workers > 0 and not resizing}
    weights = source_weights(split.train, cfg.data.source_weights)
    train = ResumableLoader(train_ds, EpochOrder(len(train_ds), cfg.training_seed, weights=weights),
                            drop_last=len(train_ds) > cfg.trainer.batch_size, **kw)
    if not split.val:
        return Loaders(train, None, stats)
    val_ds = SliceDataset(split.val, m.in_channels, m.input_size, m.normalization, stats,
                          cache=cache, outlines=outlines, pack=pack, sources=sources,
                          typed_sources=typed, framing=m.framing)
    order = EpochOrder(len(val_ds), cfg.training_seed, shuffle=False, pad=False)
    val = ResumableLoader(val_ds, order, **kw)
    return Loaders(train, val, stats)
