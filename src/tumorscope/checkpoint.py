"""Shareable checkpoints: ``model.safetensors`` (weights) beside ``model.json`` (the card).

Loading never unpickles: safetensors holds tensors only and the card is JSON.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tumorscope.errors import CheckpointError
from tumorscope.io.writers import atomic_path, write_json

CARD_FORMAT = "tumorscope-model/1"
REQUIRED_CARD_KEYS = ("format", "task", "classes", "model", "preprocessing")


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights, card)`` for a checkpoint given as a directory, ``.safetensors`` or ``.json``."""
    path = Path(path)
    if path.is_dir():
        return path / "model.safetensors", path / "model.json"
    return path.with_suffix(".safetensors"), path.with_suffix(".json")


def save_checkpoint(directory: str | Path, state: dict[str, torch.Tensor], card: dict[str, Any],
                    half: bool = False) -> Path:
    """Write weights and card into ``directory``; returns the weights path.

    The card gets ``model_id`` (name + weight hash) and ``weights_sha256``.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights, card_path = checkpoint_paths(directory)
    tensors = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in state.items()}
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"format": CARD_FORMAT})
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    card = {"format": CARD_FORMAT, **card, "weights_sha256": digest,
            "model_id": f"{card.get('name', 'model')}-{digest[:12]}",
            "weights_dtype": "float16" if half else "float32"}
    write_json(card_path, card)
    return weights


def read_card(path: str | Path) -> dict[str, Any]:
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
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
    if missing:
        raise CheckpointError(card_path, f"model card lacks {missing}")
    if card["format"] != CARD_FORMAT:
        raise CheckpointError(card_path, f"unknown card format {card['format']!r}")
    return card


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model its card describes and load its safetensors weights (float32, eval)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from tumorscope.models import get_builder

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
    model = get_builder(card["task"])(card["model"], len(card["classes"]), load_pretrained=False)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(weights, f"weights do not match the card's model: "
                              f"{str(err).splitlines()[0]}") from None
    return model.eval(), card
