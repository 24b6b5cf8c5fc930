"""Datasets, patient-level splits and the torch dataset."""

from __future__ import annotations

from pathlib import Path

from tumorscope.data.records import DatasetIndex, Record
from tumorscope.errors import ConfigError


def load_index(kind: str, root: Path) -> DatasetIndex:
    """Index dataset ``kind`` ('figshare', 'figshare-mat', 'imagefolder') found at ``root``."""
    from tumorscope.data.figshare import load_figshare_compact, load_figshare_mat
    from tumorscope.data.imagefolder import load_imagefolder
    from tumorscope.data.lgg import load_lgg

    loaders = {"figshare": load_figshare_compact, "figshare-mat": load_figshare_mat,
               "imagefolder": load_imagefolder, "lgg": load_lgg}
    if kind not in loaders:
        raise ConfigError("data.dataset", f"unknown dataset {kind!r}; known: {sorted(loaders)}")
    return loaders[kind](root)


__all__ = ["DatasetIndex", "Record", "load_index"]
