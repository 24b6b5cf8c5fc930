"""Shareable checkpoints: ``model.safetensors`` (weights) beside ``model.json`` (the card).

Loading never unpickles: safetensors holds tensors only and the card is JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from tumorscope.checkpoint.card import CARD_FORMAT, ModelCard
from tumorscope.errors import CheckpointError, TumorscopeError
from tumorscope.io.writers import atomic_path, write_json
from tumorscope.tasks.registry import get_task

REQUIRED_CARD_KEYS = ("format", "task", "classes", "model", "preprocessing")


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights, card)`` for a checkpoint given as a directory, ``.safetensors`` or ``.json``."""
    path = Path(path)
    if path.is_dir():
        return path / "model.safetensors", path / "model.json"
    return path.with_suffix(".safetensors"), path.with_suffix(".json")


def save_checkpoint(directory: str | Path, state: Mapping[str, torch.Tensor],
                    card: ModelCard | Mapping[str, Any], half: bool = False,
                    full_precision: tuple[str, ...] = ()) -> Path:
    """Write weights and card into ``directory``; returns the weights path.

    The card gets ``model_id`` (name + weight hash) and ``weights_sha256``. With ``half``,
    floating tensors are stored as float16 except those whose names start with one of
    ``full_precision`` (e.g. a precision matrix whose entries exceed float16's range).
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights, card_path = checkpoint_paths(directory)
    def stored(name: str, v: torch.Tensor) -> torch.Tensor:
        shrink = half and v.is_floating_point() and not name.startswith(full_precision)
        return (v.half() if shrink else v).detach().cpu().contiguous()

    tensors = {k: stored(k, v) for k, v in state.items()}
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"format": CARD_FORMAT})
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    typed = card if isinstance(card, ModelCard) else ModelCard.model_validate(dict(card))
    typed = typed.model_copy(update={"weights_sha256": digest,
                                     "model_id": f"{typed.name}-{digest[:12]}",
                                     "weights_dtype": "float16" if half else "float32"})
    # the fields given (as earlier versions wrote them), the format first
    write_json(card_path, {"format": CARD_FORMAT,
                           **typed.model_dump(mode="json", exclude_unset=True)})
    return weights


def read_card(path: str | Path) -> ModelCard:
    """Read and check a model card."""
    _, card_path = checkpoint_paths(path)
    if not card_path.is_file():
        if not Path(path).exists():
            raise CheckpointError(path, "checkpoint not found (give a model folder with "
                                  "model.safetensors + model.json, or one of those files)")
        raise CheckpointError(card_path, "model card not found (expected beside the weights)")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(card_path, f"model card is not valid JSON ({err})") from None
    except RecursionError:
        raise CheckpointError(card_path, "model card is nested too deeply to be a card") from None
    if not isinstance(card, dict):
        raise CheckpointError(card_path, "model card must be a JSON object")
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
    if missing:
        raise CheckpointError(card_path, f"model card lacks {missing}")
    if card["format"] != CARD_FORMAT:
        raise CheckpointError(card_path, f"unknown card format {card['format']!r}")
    try:
        return ModelCard.model_validate(card)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CheckpointError(card_path, f"model card field {where}: {first['msg']}") from None


def load_checkpoint(path: str | Path) -> tuple[nn.Module, ModelCard]:
    """Build the model its card describes and load its safetensors weights (float32, eval)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights, _ = checkpoint_paths(path)
    if not Path(path).exists():
        raise CheckpointError(path, "checkpoint not found")
    card = read_card(path)
    if not weights.is_file():
        raise CheckpointError(weights, "weights file not found beside the model card")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(weights, f"not a readable safetensors file ({err})") from None
    if card.weights_sha256:
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        if digest != card.weights_sha256:
            raise CheckpointError(weights, f"sha256 {digest[:12]}… differs from the card's "
                                  f"weights_sha256 {card.weights_sha256[:12]}…: the weights "
                                  "were changed, or the card belongs to other weights")
    broken = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
    if broken:
        raise CheckpointError(weights, f"{len(broken)} weight tensor(s) hold NaN or infinite "
                              f"values (first: {broken[0]})")
    card_path = checkpoint_paths(path)[1]
    spec = get_task(card.task, f"{card_path}: task")
    try:
        model = spec.load("network")(card.model, len(card.classes), load_pretrained=False)
    except TumorscopeError as err:
        raise CheckpointError(card_path, f"the card's model section: {err}") from None
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(card_path, f"the card's model section cannot build a {card.task} "
                              f"network ({type(err).__name__}: {err})") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(weights, f"weights do not match the card's model: "
                              f"{str(err).splitlines()[0]}") from None
    return model.eval(), card
