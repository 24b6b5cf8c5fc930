"""The joint network: an smp UNet/UNet++/FPN whose encoder also feeds a classification head.

``forward(x)`` returns ``(mask_logits [B,M,H,W], class_logits [B,K])``, M = 1 or one mask per
outline definition (``model.outlines``); a model whose card
says ``ood_features`` also returns ``ood_distance [B]``: for each encoder stage the card names
(``ood_stages``; the deepest alone when absent), the squared Mahalanobis distance of the
stage's pooled features to the nearest training class mean (shared covariance, Lee et al.
2018), standardised by its validation mean and spread, summed over the stages. It is
computed in the graph from buffers that ``tumorscope calibrate`` fits, so the ONNX export
carries it too."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import segmentation_models_pytorch as smp
import torch
from torch import nn

from tumorscope.errors import CheckpointError, ConfigError
from tumorscope.models.hub import offline_unless_reachable
from tumorscope.models.pretrained import LITE0_PACKAGE, load_encoder_file, load_lite0_package

ARCHS = {"unet": smp.Unet, "unetplusplus": smp.UnetPlusPlus, "fpn": smp.FPN}


def _smp_kwargs(arch: str, attention: str) -> dict[str, object]:
    if attention == "scse":
        if arch not in ("unet", "unetplusplus"):
            raise ConfigError("model.attention", f"scse attention needs a UNet decoder, not {arch}")
        return {"decoder_attention_type": "scse"}
    return {}


class FeatureDistance(nn.Module):
    """Squared Mahalanobis distance of feature vectors to the nearest of ``classes`` means
    under one shared precision matrix (both buffers, fitted after training)."""

    def __init__(self, classes: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("means", torch.zeros(classes, dim))
        self.register_buffer("precision", torch.eye(dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        means, precision = cast(torch.Tensor, self.means), cast(torch.Tensor, self.precision)
        diff = features[:, None, :] - means[None]  # (B, K, D)
        d2 = torch.einsum("bkd,de,bke->bk", diff, precision, diff)
        return d2.min(dim=1).values


class StageDistance(nn.Module):
    """The sum over encoder stages of each stage's :class:`FeatureDistance`, standardised
    by ``centre`` and ``scale`` (its validation mean and standard deviation; 0 and 1 leave a
    single stage's distance as it is)."""

    def __init__(self, classes: int, dims: list[int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(FeatureDistance(classes, d) for d in dims)
        self.register_buffer("centre", torch.zeros(len(dims)))
        self.register_buffer("scale", torch.ones(len(dims)))

    def per_stage(self, features: list[torch.Tensor]) -> torch.Tensor:
        """``(B, stages)``: each stage's distance before standardisation."""
        return torch.stack([stage(f) for stage, f in zip(self.stages, features, strict=True)],
                           dim=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        centre, scale = cast(torch.Tensor, self.centre), cast(torch.Tensor, self.scale)
        return ((self.per_stage(features) - centre) / scale).sum(dim=1)


def _legacy_reference(state: dict[str, torch.Tensor], prefix: str, *_: object) -> None:
    """A model calibrated before stages existed (``ood.means``, ``ood.precision``, the
    deepest stage) loads as one unstandardised stage."""
    if f"{prefix}ood.means" in state:
        for name in ("means", "precision"):
            state[f"{prefix}ood.stages.0.{name}"] = state.pop(f"{prefix}ood.{name}")
        state.setdefault(f"{prefix}ood.centre", torch.zeros(1))
        state.setdefault(f"{prefix}ood.scale", torch.ones(1))


class JointWithDistance(nn.Module):
    """A joint smp model plus :class:`StageDistance` on the pooled features of the encoder
    stages ``stages`` (indices into the encoder's outputs; -1 is the deepest).

    The smp model's parameters keep their names (``encoder.*``, ``decoder.*``, ...), so its
    weights load as they are; the distance's buffers are under ``ood.``.
    """

    def __init__(self, net: nn.Module, classes: int, stages: tuple[int, ...] = (-1,)) -> None:
        super().__init__()
        for name, child in net.named_children():
            self.add_module(name, child)
        channels = cast(list[int], cast(nn.Module, net.encoder).out_channels)
        if not stages or any(not -len(channels) < s < len(channels) or s == 0 for s in stages):
            raise ConfigError("model.ood_stages", f"{list(stages)}: encoder stages are 1.."
                              f"{len(channels) - 1} or -1..-{len(channels) - 1} (-1: deepest)")
        self.ood_stages = tuple(stages)
        self.ood = StageDistance(classes, [int(channels[s]) for s in stages])
        self._register_load_state_dict_pre_hook(_legacy_reference)

    def _heads(self, x: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Mask logits, class logits and every encoder stage's feature map."""
        features = cast(nn.Module, self.encoder)(x)
        masks = cast(nn.Module, self.segmentation_head)(cast(nn.Module, self.decoder)(features))
        return masks, cast(nn.Module, self.classification_head)(features[-1]), features

    def with_stages(self, x: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Mask logits, class logits and the pooled features of each distance stage."""
        masks, labels, features = self._heads(x)
        return masks, labels, [features[s].mean(dim=(2, 3)) for s in self.ood_stages]

    def pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask logits, class logits and the pooled deepest encoder features."""
        masks, labels, features = self._heads(x)
        return masks, labels, features[-1].mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        masks, labels, stages = self.with_stages(x)
        return masks, labels, self.ood(stages)


def own_outline(mask_logits: torch.Tensor, outline: torch.Tensor | None) -> torch.Tensor:
    """``(B, 1, H, W)``: each slice's mask output for its own outline definition (the
    ``outline`` index per slice) out of ``(B, M, H, W)``; M = 1 passes through."""
    if mask_logits.shape[1] == 1:
        return mask_logits
    if outline is None:
        raise ValueError("a model with one mask per outline needs each slice's outline index")
    index = outline.to(mask_logits.device).long().view(-1, 1, 1, 1)
    return mask_logits.gather(1, index.expand(-1, 1, *mask_logits.shape[2:]))


def build_joint(arch: str, encoder: str, num_classes: int, in_channels: int = 1,
                encoder_weights: str | None = None, attention: str = "none",
                dropout: float = 0.2, ood: bool = False, mask_channels: int = 1,
                ood_stages: tuple[int, ...] = (-1,)) -> nn.Module:
    """Build the joint model; ``encoder_weights`` is 'imagenet', a file path, the
    'efficientnet-lite0-package' or None (random init). ``ood`` adds the feature distance
    output (smp architectures only); ``mask_channels`` > 1: one mask per outline definition."""
    if arch == "plain-unet" and mask_channels != 1:
        raise ConfigError("model.outlines", "plain-unet has one mask output")
    net = build_smp(arch, encoder, in_channels, mask_channels, num_classes, encoder_weights,
                    attention, dropout)
    if not ood:
        return net
    if arch == "plain-unet":
        raise ConfigError("model.ood_features", "the feature distance needs an smp encoder")
    return JointWithDistance(net, num_classes, ood_stages)


def build_smp(arch: str, encoder: str, in_channels: int, mask_channels: int,
              head_classes: int | None, encoder_weights: str | None = None,
              attention: str = "none", dropout: float = 0.2) -> nn.Module:
    """An smp segmenter with ``mask_channels`` outputs, and a classification head on the
    encoder when ``head_classes`` is given (the joint model)."""
    if arch == "plain-unet":
        if head_classes is None:
            raise ConfigError("model.arch", "plain-unet is built with a classification head")
        if encoder_weights not in (None, "", "none", "null"):
            raise ConfigError("model.encoder_weights", "plain-unet has no pretrained encoder; "
                              "set model.encoder_weights=none")
        from tumorscope.models.plain_unet import PlainUNet

        return PlainUNet(in_channels, head_classes, dropout)
    if arch not in ARCHS:
        known = sorted([*ARCHS, "plain-unet"])
        raise ConfigError("model.arch", f"unknown architecture {arch!r}; known: {known}")
    weights = None if encoder_weights in (None, "", "none", "null") else encoder_weights
    hub = weights if weights is not None and not _is_local(weights) else None
    online = False
    try:
        with offline_unless_reachable(needed=hub is not None) as online:
            head = None if head_classes is None else {"classes": head_classes,
                                                      "dropout": dropout}
            model = ARCHS[arch](encoder_name=encoder, encoder_weights=hub,
                                in_channels=in_channels, classes=mask_channels,
                                aux_params=head, **_smp_kwargs(arch, attention))
    except KeyError as err:
        raise ConfigError("model.encoder", f"unknown encoder {encoder!r} ({err})") from None
    except (OSError, RuntimeError, ValueError) as err:
        if hub is None:
            raise ConfigError("model.encoder", f"cannot build {arch}/{encoder}: {err}") from None
        why = "the download failed" if online else "no internet and not in the local cache"
        raise CheckpointError(f"model.encoder_weights={hub}", f"cannot fetch {hub} weights for "
                              f"{encoder}: {why} ({type(err).__name__}). Use a local weights file "
                              "(model.encoder_weights=/path/encoder.safetensors), the offline "
                              f"ImageNet weights (model.encoder=tu-tf_efficientnet_lite0 "
                              f"model.encoder_weights={LITE0_PACKAGE}) or none") from None
    if arch == "unet" and attention == "scse":
        _drop_unused_attention(model)
    if weights == LITE0_PACKAGE:
        if encoder != "tu-tf_efficientnet_lite0":
            raise ConfigError("model.encoder_weights", f"{LITE0_PACKAGE} fits encoder "
                              f"tu-tf_efficientnet_lite0, not {encoder}")
        load_lite0_package(model.encoder, in_channels)
    elif weights is not None and _is_local(weights):
        load_encoder_file(model.encoder, Path(weights).expanduser(), in_channels)
    return model


def _drop_unused_attention(model: nn.Module) -> None:
    """smp's last UNet decoder stage has no skip connection, so its first attention block never
    runs: its parameters get no gradient (DDP stops on them) and only take room. It becomes an
    Identity; its weights in checkpoints saved before are ignored when loading."""
    blocks = cast(nn.ModuleList, cast(nn.Module, model.decoder).blocks)
    last = blocks[-1]
    if isinstance(last.attention1, nn.Identity):
        return
    last.attention1 = nn.Identity()

    def drop(module: nn.Module, state: dict[str, object], prefix: str, *_: object) -> None:
        for key in [k for k in state if k.startswith(f"{prefix}attention1.")]:
            del state[key]

    last.register_load_state_dict_pre_hook(drop)  # on the block: any wrapper keeps it


def _is_local(weights: str) -> bool:
    return weights == LITE0_PACKAGE or os.sep in weights or weights.endswith(
        (".pt", ".pth", ".safetensors", ".bin"))


def joint_from_config(model_cfg: dict[str, object], num_classes: int,
                      load_pretrained: bool = True) -> nn.Module:
    """Build from the ``model`` config section (a plain dict, as stored in model cards)."""
    return build_joint(
        arch=str(model_cfg["arch"]), encoder=str(model_cfg["encoder"]), num_classes=num_classes,
        in_channels=int(model_cfg["in_channels"]),  # type: ignore[call-overload]
        encoder_weights=model_cfg.get("encoder_weights") if load_pretrained else None,  # type: ignore[arg-type]
        attention=str(model_cfg.get("attention", "none")),
        dropout=float(model_cfg.get("dropout", 0.2)),  # type: ignore[arg-type]
        ood=bool(model_cfg.get("ood_features", False)),
        mask_channels=len(cast(list[str], model_cfg.get("outlines") or [None])),
        ood_stages=tuple(cast(list[int], model_cfg.get("ood_stages") or [-1])),
    )
