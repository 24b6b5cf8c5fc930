"""A small registry: architecture name -> model builder."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a builder under ``name``."""
    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _BUILDERS[name] = builder
        return builder
    return add


def get_builder(name: str) -> Callable[..., nn.Module]:
    """The builder registered as ``name``; KeyError lists the known ones."""
    if name not in _BUILDERS:
        raise KeyError(f"unknown architecture {name!r}; known: {sorted(_BUILDERS)}")
    return _BUILDERS[name]


def available() -> list[str]:
    """Names of every registered architecture."""
    return sorted(_BUILDERS)
