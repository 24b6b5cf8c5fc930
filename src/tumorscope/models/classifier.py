"""Slice classifiers for the classify task: any timm model by name, or the capsule network.

``forward(x)`` returns ``(class_logits,)`` (the task's one output); ``pooled_features(x)`` the
features before the head (t-SNE, out-of-distribution references); ``body_groups(n)`` the
body's parameters split by depth into ``n`` groups, stem first (discriminative learning
rates), and ``head_parameters()`` the rest.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from tumorscope.errors import CheckpointError, ConfigError
from tumorscope.models.hub import offline_unless_reachable
from tumorscope.models.pretrained import LITE0_PACKAGE, load_encoder_file, load_lite0_package

NO_WEIGHTS = (None, "", "none", "null")


def split_evenly(groups: list[list[nn.Parameter]], n: int) -> list[list[nn.Parameter]]:
    """Ordered parameter ``groups`` merged into ``min(n, len(groups))`` runs of near-equal
    length (empty groups dropped)."""
    groups = [g for g in groups if g]
    n = max(1, min(n, len(groups)))
    bounds = [round(i * len(groups) / n) for i in range(n + 1)]
    return [list(itertools.chain.from_iterable(groups[a:b]))
            for a, b in itertools.pairwise(bounds)]


class TimmClassifier(nn.Module):
    """A timm model with ``num_classes`` outputs, held as ``self.model`` (so encoder weight
    files and the EfficientNet-Lite0 package load by timm's own parameter names)."""

    def __init__(self, name: str, num_classes: int, in_channels: int, dropout: float) -> None:
        super().__init__()
        import timm

        try:
            self.model = timm.create_model(name, pretrained=False, num_classes=num_classes,
                                           in_chans=in_channels, drop_rate=dropout)
        except RuntimeError as err:  # timm: "Unknown model (...)"
            raise ConfigError("model.name", f"{err}; list them with timm.list_models()") from None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.model(x),)

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features before the classifier layer ``(B, D)``."""
        net = cast(Any, self.model)
        return cast(torch.Tensor, net.forward_head(net.forward_features(x), pre_logits=True))

    def head_parameters(self) -> list[nn.Parameter]:
        """The classifier layer: what learns at the full rate."""
        return list(cast(Any, self.model).get_classifier().parameters())

    def body_groups(self, n: int) -> list[list[nn.Parameter]]:
        """Body parameters by depth (timm's coarse stem/stage groups), cut into ``n``."""
        from timm.models import group_parameters

        head = {id(p) for p in self.head_parameters()}
        names = dict(self.model.named_parameters())
        grouped = group_parameters(self.model, cast(Any, self.model).group_matcher(coarse=True))
        ordered = [[names[k] for k in keys if id(names[k]) not in head]
                   for _, keys in sorted(grouped.items())]
        return split_evenly(ordered, n)


def load_timm_weights(model: nn.Module, name: str, weights: str, in_channels: int) -> None:
    """Pretrained weights into a module holding timm model ``name`` as ``model.model`` (a
    classifier, or a capsule front end cut from it): the package, the hub or a file."""
    if weights == LITE0_PACKAGE:
        if name != "tf_efficientnet_lite0":
            raise ConfigError("model.encoder_weights", f"{LITE0_PACKAGE} fits "
                              "tf_efficientnet_lite0 (model.name, or a capsule net's "
                              f"model.front_end), not {name}")
        load_lite0_package(model, in_channels)
    elif weights == "imagenet":
        _load_hub(model, name, in_channels)
    else:
        load_encoder_file(cast(nn.Module, model.model), Path(weights).expanduser(), in_channels)


def _load_hub(model: nn.Module, name: str, in_channels: int) -> None:
    """timm's pretrained weights from the hub; offline, fail at once with the options."""
    import timm

    with offline_unless_reachable() as online:
        try:
            source = timm.create_model(name, pretrained=True, in_chans=in_channels)
        except (OSError, RuntimeError, ValueError) as err:
            why = "the download failed" if online else "no internet and not in the local cache"
            raise CheckpointError("model.encoder_weights=imagenet", f"cannot fetch {name} "
                                  f"ImageNet weights: {why} ({type(err).__name__}). Offline "
                                  "options: a local file (model.encoder_weights=/path/"
                                  "weights.safetensors), model.name=tf_efficientnet_lite0 with "
                                  f"model.encoder_weights={LITE0_PACKAGE}, or none "
                                  "(see docs/classifiers.md)") from None
    net = cast(nn.Module, model.model)
    own = net.state_dict()
    net.load_state_dict({k: v for k, v in source.state_dict().items()
                                 if k in own and v.shape == own[k].shape}, strict=False)


def classifier_from_config(model_cfg: dict[str, object], num_classes: int,
                           load_pretrained: bool = True) -> nn.Module:
    """Build from the ``model`` section (a plain dict, as stored in model cards)."""
    arch = model_cfg.get("arch", "timm")
    if arch == "capsule":
        from tumorscope.models.capsule import capsule_from_config

        return capsule_from_config(model_cfg, num_classes, load_pretrained)
    name, channels = str(model_cfg.get("name", "resnet50")), int(model_cfg.get("in_channels", 1))  # type: ignore[call-overload]
    model = TimmClassifier(name, num_classes, channels,
                           float(model_cfg.get("dropout", 0.2)))  # type: ignore[arg-type]
    weights = model_cfg.get("encoder_weights")
    if load_pretrained and weights not in NO_WEIGHTS:
        load_timm_weights(model, name, str(weights), channels)
    return model
