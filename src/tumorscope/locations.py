"""Where things live: the shipped default model and the configs shipped with the project."""

from __future__ import annotations

import os
from pathlib import Path

from tumorscope.errors import TumorscopeError

REPO = Path(__file__).resolve().parents[2]

MODELS = REPO / "models"
DEFAULT_MODEL_DIRS = [MODELS / "default"]


def shipped_checkpoints() -> list[Path]:
    """Every model shipped under ``models/`` (the default model first)."""
    found = sorted(p.parent for p in MODELS.glob("*/model.json"))
    return sorted(found, key=lambda p: p.name != "default")


def shipped_case_model() -> Path | None:
    """The shipped BraTS model (``models/brats``), if there is one."""
    path = MODELS / "brats"
    return path if (path / "model.json").is_file() else None


def default_checkpoint() -> Path:
    """The shipped default model (``$TUMORSCOPE_MODEL`` overrides)."""
    env = os.environ.get("TUMORSCOPE_MODEL")
    candidates = [Path(env)] if env else DEFAULT_MODEL_DIRS
    for path in candidates:
        if (path / "model.json").is_file() or path.with_suffix(".json").is_file():
            return path
    raise TumorscopeError("--checkpoint", "no checkpoint given and no default model found at "
                          f"{candidates[0]}; train one (tumorscope train) or pass --checkpoint")


def cache_dir() -> Path:
    """Where derived data is cached (``$TUMORSCOPE_CACHE``, else ``~/.cache/tumorscope``)."""
    env = os.environ.get("TUMORSCOPE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tumorscope"


CONFIG_DIR = REPO / "configs"


def named_config(name: str) -> Path:
    """``lgg/unet`` or ``unet-resnext50`` -> the matching file under configs/."""
    path = Path(name)
    if path.is_file():
        return path
    matches = sorted(CONFIG_DIR.glob(f"{name}.yaml")) or sorted(CONFIG_DIR.rglob(f"{name}.yaml"))
    if len(matches) != 1:
        known = sorted(str(p.relative_to(CONFIG_DIR).with_suffix("")) for p in
                       CONFIG_DIR.rglob("*.yaml"))
        why = "is ambiguous" if matches else "not found"
        raise TumorscopeError("--model", f"config {name!r} {why}; known: {', '.join(known)}")
    return matches[0]
