"""A run's data before any pixels are read: the dataset index and its patient-level split."""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from tumorscope.config import (
    ClassifyExperiment,
    ExperimentConfig,
    JointExperiment,
    resolve_data_root,
)
from tumorscope.data.records import DatasetIndex, Record
from tumorscope.data.registry import get_indexer
from tumorscope.data.splits import Split, make_split, uses_shipped_folds
from tumorscope.errors import ConfigError

T = TypeVar("T")


def prepare_split(cfg: ExperimentConfig, data_root: str | None = None, use_pack: bool = False,
                  sources_setting: str = "data.sources") -> tuple[DatasetIndex, Split]:
    """Index the dataset and split it by patient as the config says; with ``use_pack``
    (training), the index and split of ``data.pack`` when the config names one.
    ``sources_setting`` is what an unknown dataset name is blamed on (e.g. ``--sources``)."""
    if use_pack and cfg.data.pack and isinstance(cfg, JointExperiment | ClassifyExperiment):
        from tumorscope.data.pack import read_pack

        pack = read_pack(cfg)
        return pack.index, pack.split
    indexer = get_indexer(cfg.data.dataset)  # a misspelt name first, not "folder not found"
    root = resolve_data_root(cfg, data_root)
    if not root.exists():
        raise ConfigError("data.root", f"dataset folder {root} not found (set data.root or "
                          "TUMORSCOPE_DATA)")
    index = keep_sources(indexer(root), cfg.data.sources, sources_setting)
    if any(r.fold is not None for r in index.records) and not uses_shipped_folds(
            index, cfg.data.folds, cfg.data.fold_source):
        index.info["split"] = (f"computed: {cfg.data.folds} folds by patient (stratified, seed "
                               f"{cfg.seed}); the shipped folds are not used")
    split = make_split(index, cfg.data.folds, cfg.data.test_fold, cfg.data.val_fold, cfg.seed,
                       cfg.data.fold_source)
    if cfg.data.limit_per_split:
        n = cfg.data.limit_per_split
        split = Split(spread(split.train, n), spread(split.val, n), spread(split.test, n),
                      split.test_fold, split.val_fold)
    if not split.train:
        raise ConfigError("data", "the split leaves no training slices")
    return index, split


def keep_sources(index: DatasetIndex, sources: list[str] | None,
                 setting: str = "data.sources") -> DatasetIndex:
    """The index with only the records of ``sources`` (all when None); an unknown name is a
    config error of ``setting``."""
    if sources is None:
        return index
    known = sorted({r.source or index.name for r in index.records})
    unknown = sorted(set(sources) - set(known))
    if unknown:
        raise ConfigError(setting, f"{unknown} not in this dataset; it has {known}")
    records = [r for r in index.records if (r.source or index.name) in sources]
    return DatasetIndex(index.name, index.root, index.classes, records,
                        {**index.info, "sources": list(sources)})


def source_weights(records: list[Record], weights: dict[str, float] | None
                   ) -> np.ndarray | None:
    """Each training record's sampling weight from ``data.source_weights`` (others 1);
    None without weights. A dataset name absent from the records is a config error."""
    if not weights:
        return None
    present = sorted({r.source for r in records if r.source})
    unknown = sorted(set(weights) - set(present))
    if unknown:
        raise ConfigError("data.source_weights", f"{unknown} not among the training slices' "
                          f"datasets {present}")
    return np.array([weights.get(r.source or "", 1.0) for r in records])


def spread(records: list[T], n: int) -> list[T]:
    """An evenly spaced subset (keeps classes and patients mixed for quick demos)."""
    if len(records) <= n:
        return records
    step = len(records) / n
    return [records[int(i * step)] for i in range(n)]
