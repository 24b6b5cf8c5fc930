"""Dataset registry: name -> indexer (``root -> DatasetIndex``).

A dataset module registers its indexer with :func:`register_dataset`; ``data/__init__.py``
imports the built-in ones. A config names the dataset in ``data.dataset``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tumorscope.data.records import DatasetIndex
from tumorscope.errors import ConfigError

Indexer = Callable[[Path], DatasetIndex]
_INDEXERS: dict[str, Indexer] = {}


def register_dataset(name: str) -> Callable[[Indexer], Indexer]:
    """Decorator registering ``indexer`` under ``name``."""
    def add(indexer: Indexer) -> Indexer:
        if name in _INDEXERS and _INDEXERS[name] is not indexer:
            raise ValueError(f"dataset {name!r} is registered twice")
        _INDEXERS[name] = indexer
        return indexer
    return add


def dataset_names() -> list[str]:
    """Every registered dataset."""
    return sorted(_INDEXERS)


def get_indexer(name: str) -> Indexer:
    """The indexer registered as ``name``; a one-line error listing the known ones."""
    if name not in _INDEXERS:
        raise ConfigError("data.dataset", f"unknown dataset {name!r}; known: {dataset_names()}")
    return _INDEXERS[name]


def load_index(name: str, root: Path) -> DatasetIndex:
    """Index dataset ``name`` found at ``root``."""
    return get_indexer(name)(root)
