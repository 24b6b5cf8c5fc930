"""A convolutional capsule network classifier (Sabour et al. 2017, dynamic routing).

``CapsuleNet.forward(x)`` returns ``(class_logits [B,K],)`` with ``class_logits =
log(|s|^2 + eps)``, ``s`` the class capsules before squashing; since ``|squash(s)| =
|s|^2 / (1 + |s|^2)``, ``sigmoid(class_logits)`` is the capsule lengths, so the same output
feeds cross-entropy (softmax) or :func:`margin_loss` (``lengths_from_logits``).

Layout: a strided conv front end (``encoder``, /16: the network's own convs, or any timm
model's features cut at stride 16, e.g. ImageNet EfficientNet-Lite0), ``PrimaryCaps`` (one
more stride-2 conv: ``primary_caps`` capsule types of ``capsule_dim`` at every position of a
/32 grid) and ``ClassCaps`` (one ``class_dim`` capsule per class, by routing by agreement).
The prediction weights are shared across the positions of each primary type, so the parameter
count does not depend on the input size and any size divisible by 32 runs (ONNX included,
dynamic axes).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn

from tumorscope.errors import ConfigError

SQUASH_EPS = 1e-8
LOGIT_EPS = 1e-6
RECONSTRUCTION_WEIGHT = 0.0005
DEFAULT_CHANNELS = (32, 64, 128, 256)
CONVS = "convs"  # model.front_end: the network's own conv front end
FRONT_STRIDE = 16


def timm_front_end(model_cfg: Mapping[str, Any]) -> str | None:
    """The timm model a capsule network's front end is cut from (a ``model`` config section
    or card), or None for its own convs (and for any other architecture)."""
    front = model_cfg.get("front_end", CONVS)
    return None if model_cfg.get("arch") != "capsule" or front == CONVS else str(front)


def squash(s: torch.Tensor, dim: int = -1, eps: float = SQUASH_EPS) -> torch.Tensor:
    """``|s|^2 / (1 + |s|^2) * s / |s|`` along ``dim``: length in [0, 1), direction kept;
    zero (with a zero, finite gradient) at ``s = 0``."""
    sq = (s * s).sum(dim=dim, keepdim=True)
    return s * (sq / (1.0 + sq)) / torch.sqrt(sq + eps)


class Routing(NamedTuple):
    """Routing result: ``v`` [B,K,D] (squashed), ``s`` [B,K,D] (before squashing), and the
    coupling coefficients [B,N,K] used in each iteration (only when asked for)."""

    v: torch.Tensor
    s: torch.Tensor
    couplings: list[torch.Tensor]


def dynamic_routing(u_hat: torch.Tensor, iterations: int = 3,
                    keep_couplings: bool = False) -> Routing:
    """Routing by agreement over predictions ``u_hat`` [B,N,K,D] (N inputs, K outputs):
    b = 0; repeat: c = softmax(b over K), s = sum_N c u_hat, v = squash(s), b += u_hat . v."""
    if iterations < 1:
        raise ValueError(f"routing needs at least one iteration, got {iterations}")
    # b = 0 is implicit in the first iteration (c = 1/K): a zeros tensor shaped like u_hat
    # would be frozen to the example's size by the ONNX tracer
    k = u_hat.shape[2]
    b: torch.Tensor | None = None
    couplings: list[torch.Tensor] = []
    s = v = u_hat[:, 0]
    for i in range(iterations):
        if b is None:
            s = u_hat.sum(dim=1) / k
            if keep_couplings:
                couplings.append(torch.full_like(u_hat[..., 0], 1.0 / k))
        else:
            c = torch.softmax(b, dim=2)
            if keep_couplings:
                couplings.append(c)
            s = (c.unsqueeze(-1) * u_hat).sum(dim=1)
        v = squash(s)
        if i + 1 < iterations:
            agreement = (u_hat * v.unsqueeze(1)).sum(dim=-1)
            b = agreement if b is None else b + agreement
    return Routing(v, s, couplings)


def margin_loss(lengths: torch.Tensor, targets: torch.Tensor, m_plus: float = 0.9,
                m_minus: float = 0.1, lam: float = 0.5) -> torch.Tensor:
    """Margin loss on capsule lengths [B,K] and class indices [B], summed over classes and
    averaged over the batch: T max(0, m+ - |v|)^2 + lam (1 - T) max(0, |v| - m-)^2."""
    present = F.one_hot(targets.long(), lengths.shape[1]).to(lengths.dtype)
    pos = F.relu(m_plus - lengths) ** 2
    neg = F.relu(lengths - m_minus) ** 2
    return (present * pos + lam * (1.0 - present) * neg).sum(dim=1).mean()


def lengths_from_logits(class_logits: torch.Tensor) -> torch.Tensor:
    """Capsule lengths from :class:`CapsuleNet` logits (``sigmoid``; exact up to ``eps``)."""
    return torch.sigmoid(class_logits)


def reconstruction_loss(recon: torch.Tensor, images: torch.Tensor,
                        weight: float = RECONSTRUCTION_WEIGHT) -> torch.Tensor:
    """``weight`` x the per-image sum of squared errors (as in the paper), batch mean; the
    images are resized (area) to the reconstruction's size."""
    target = F.interpolate(images, size=recon.shape[-2:], mode="area")
    return weight * ((recon - target) ** 2).flatten(1).sum(dim=1).mean()


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those that require gradients)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise ConfigError("model.norm", f"unknown norm {kind!r}; known: ['batch', 'group']")


def _conv(c_in: int, c_out: int, kernel: int, stride: int, norm: str) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         _norm(norm, c_out), nn.ReLU(inplace=True))


def front_end(in_channels: int, channels: Sequence[int], norm: str = "batch") -> nn.Sequential:
    """A 5x5 stride-2 stem, then per further width a stride-2 and a stride-1 3x3 conv
    (each conv + norm + ReLU): output stride ``2 ** len(channels)``."""
    layers: list[nn.Module] = [_conv(in_channels, channels[0], 5, 2, norm)]
    for c_in, c_out in itertools.pairwise(channels):
        layers.append(nn.Sequential(_conv(c_in, c_out, 3, 2, norm),
                                    _conv(c_out, c_out, 3, 1, norm)))
    return nn.Sequential(*layers)


class TimmFrontEnd(nn.Module):
    """A timm model's features cut at output stride 16, held as ``self.model`` so weight
    files, hub weights and the EfficientNet-Lite0 package load by timm's own names."""

    def __init__(self, name: str, in_channels: int) -> None:
        super().__init__()
        import timm

        try:
            probe = timm.create_model(name, pretrained=False, features_only=True,
                                      in_chans=in_channels)
        except RuntimeError as err:  # timm: "Unknown model (...)"
            raise ConfigError("model.front_end", f"{err}; use '{CONVS}' or a timm model "
                              "name (timm.list_models())") from None
        reductions = list(cast(Any, probe).feature_info.reduction())
        if FRONT_STRIDE not in reductions:
            raise ConfigError("model.front_end", f"{name} has no stride-{FRONT_STRIDE} "
                              f"features (strides {reductions})")
        model: Any = timm.create_model(name, pretrained=False, features_only=True,
                                       in_chans=in_channels,
                                       out_indices=(reductions.index(FRONT_STRIDE),))
        blocks = getattr(model, "blocks", None)
        last = str(model.feature_info.module_name()[0])  # e.g. "blocks.4"
        if isinstance(blocks, nn.Sequential) and re.fullmatch(r"blocks\.\d+", last):
            # EfficientNet-style features keep every block; the later ones would be unused
            model.blocks = blocks[: int(last.split(".")[1]) + 1]
        self.model = model
        self.out_channels = int(model.feature_info.channels()[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.model(x)[-1])

    def layers(self) -> list[nn.Module]:
        """Depth-ordered layers (sequential containers opened one level)."""
        out: list[nn.Module] = []
        for child in self.model.children():
            out.extend(child.children() if isinstance(child, nn.Sequential) else [child])
        return out


class PrimaryCaps(nn.Module):
    """A conv giving ``types`` capsules of ``dim`` per position, squashed: [B, types, H*W, dim]."""

    def __init__(self, in_channels: int, types: int = 32, dim: int = 8, kernel: int = 5,
                 stride: int = 2) -> None:
        super().__init__()
        self.types, self.dim = types, dim
        self.conv = nn.Conv2d(in_channels, types * dim, kernel, stride, kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.conv(x).flatten(2).unflatten(1, (self.types, self.dim))  # [B,T,D,P]
        return squash(u.transpose(2, 3))


class ClassCaps(nn.Module):
    """One capsule of ``out_dim`` per class, routed from primary capsules [B,T,P,in_dim]; the
    prediction weight W[t] (in_dim -> classes x out_dim) is shared by all P positions of type t."""

    def __init__(self, in_types: int, in_dim: int, num_classes: int, out_dim: int = 16,
                 iterations: int = 3, init_std: float = 0.01) -> None:
        super().__init__()
        self.num_classes, self.out_dim, self.iterations = num_classes, out_dim, iterations
        self.weight = nn.Parameter(torch.randn(in_types, in_dim, num_classes * out_dim) * init_std)

    def predictions(self, u: torch.Tensor) -> torch.Tensor:
        """u_hat [B, T*P, classes, out_dim] from primary capsules [B,T,P,in_dim]."""
        return torch.matmul(u, self.weight).flatten(1, 2).unflatten(
            -1, (self.num_classes, self.out_dim))

    def forward(self, u: torch.Tensor, keep_couplings: bool = False) -> Routing:
        return dynamic_routing(self.predictions(u), self.iterations, keep_couplings)


class CapsuleDecoder(nn.Module):
    """Masked class capsules [B,K,D] -> a small image [B, C, size, size] (linear + 2x
    transposed convs from 4x4; linear output, as the inputs are normalised, not in [0,1])."""

    def __init__(self, num_classes: int, capsule_dim: int, out_channels: int = 1,
                 size: int = 64, width: int = 128) -> None:
        super().__init__()
        ups = (size // 4).bit_length() - 1
        if size < 8 or 4 << ups != size:
            raise ConfigError("model.reconstruction_size",
                              f"must be a power of two >= 8, got {size}")
        self.width = width
        self.fc = nn.Sequential(nn.Linear(num_classes * capsule_dim, width * 16),
                                nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        c = width
        for i in range(ups):
            c_out = out_channels if i + 1 == ups else max(c // 2, 16)
            layers.append(nn.ConvTranspose2d(c, c_out, 4, 2, 1))
            if i + 1 < ups:
                layers.append(nn.ReLU(inplace=True))
            c = c_out
        self.up = nn.Sequential(*layers)

    def forward(self, capsules: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Keep the ``targets`` capsule (training) or the longest one (None) and decode it."""
        k = capsules.shape[1]
        chosen = capsules.norm(dim=-1).argmax(dim=1) if targets is None else targets.long()
        masked = capsules * F.one_hot(chosen, k).to(capsules.dtype).unsqueeze(-1)
        return self.up(self.fc(masked.flatten(1)).unflatten(1, (self.width, 4, 4)))


class CapsuleNet(nn.Module):
    """Conv front end -> PrimaryCaps -> ClassCaps (dynamic routing).

    ``forward(x) -> (class_logits,)``; ``lengths_from_logits(logits)`` are the capsule
    lengths. ``capsules(x)`` gives the class capsules [B,K,D], ``reconstruct`` decodes them
    (when built with ``reconstruction``), ``pooled_features(x)`` the averaged front-end
    features [B,C] and ``capsule_features(x)`` the flattened class capsules [B,K*D].
    """

    def __init__(self, num_classes: int, in_channels: int = 1, input_size: int = 256,
                 channels: Sequence[int] = DEFAULT_CHANNELS, primary_caps: int = 48,
                 capsule_dim: int = 8, class_dim: int = 16, primary_kernel: int = 5,
                 routing_iterations: int = 3, norm: str = "batch",
                 reconstruction: bool = False, reconstruction_size: int = 64,
                 front: str = CONVS) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError("classes", f"a classifier needs 2 classes or more, not {num_classes}")
        if routing_iterations < 1:
            raise ConfigError("model.routing_iterations",
                              f"must be at least 1, got {routing_iterations}")
        stride = 2 * (FRONT_STRIDE if front != CONVS else 2 ** len(channels))
        if not channels or input_size % stride:
            raise ConfigError("model.input_size",
                              f"must be a multiple of {stride}, got {input_size}")
        self.num_classes, self.in_channels, self.input_size = num_classes, in_channels, input_size
        self.stride = stride
        self.encoder: nn.Module
        if front == CONVS:
            self.encoder, width = front_end(in_channels, channels, norm), channels[-1]
        else:
            timm_front = TimmFrontEnd(front, in_channels)
            self.encoder, width = timm_front, timm_front.out_channels
        self.primary = PrimaryCaps(width, primary_caps, capsule_dim, primary_kernel)
        self.classcaps = ClassCaps(primary_caps, capsule_dim, num_classes, class_dim,
                                   routing_iterations)
        self.decoder = (CapsuleDecoder(num_classes, class_dim, in_channels, reconstruction_size)
                        if reconstruction else None)

    def route(self, x: torch.Tensor, keep_couplings: bool = False) -> Routing:
        """The class capsule routing for images [B,C,H,W]."""
        return self.classcaps(self.primary(self.encoder(x)), keep_couplings)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.logits(self.route(x).s),)

    @staticmethod
    def logits(s: torch.Tensor) -> torch.Tensor:
        """``log(|s|^2 + eps)`` = logit of the capsule length |squash(s)|."""
        return torch.log((s * s).sum(dim=-1) + LOGIT_EPS)

    def logits_and_capsules(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both from one pass (training with reconstruction): [B,K] and [B,K,D]."""
        routed = self.route(x)
        return self.logits(routed.s), routed.v

    def capsules(self, x: torch.Tensor) -> torch.Tensor:
        """The class capsules [B,K,D] (lengths: the class presence)."""
        return self.route(x).v

    def reconstruct(self, capsules: torch.Tensor,
                    targets: torch.Tensor | None = None) -> torch.Tensor:
        """Decode the ``targets`` capsule (or the longest) into [B,C,size,size]."""
        if self.decoder is None:
            raise ConfigError("model.reconstruction", "this capsule net has no decoder; "
                              "build it with model.reconstruction=true")
        return self.decoder(capsules, targets)

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally averaged front-end features [B, channels[-1]] (for embeddings)."""
        return self.encoder(x).mean(dim=(2, 3))

    def body_groups(self, n: int) -> list[list[nn.Parameter]]:
        """Front-end layers and primary capsules, by depth, cut into ``n`` groups."""
        from tumorscope.models.classifier import split_evenly

        front = (self.encoder.layers() if isinstance(self.encoder, TimmFrontEnd)
                 else list(cast(nn.Sequential, self.encoder)))
        layers = [list(m.parameters()) for m in front] + [list(self.primary.parameters())]
        return split_evenly(layers, n)

    def head_parameters(self) -> list[nn.Parameter]:
        """Class capsules (and the decoder): what learns at the full rate."""
        body = {id(p) for group in self.body_groups(1) for p in group}
        return [p for p in self.parameters() if id(p) not in body]

    def capsule_features(self, x: torch.Tensor) -> torch.Tensor:
        """The class capsules flattened [B, K*D] (the representation the decision uses)."""
        return self.capsules(x).flatten(1)


def _int(cfg: dict[str, object], key: str, default: int) -> int:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"model.{key}", f"expected an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"model.{key}", f"expected an integer, got {value!r}") from None


def _bool(cfg: dict[str, object], key: str, default: bool) -> bool:
    value = cfg.get(key, default)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    if not isinstance(value, bool | int):
        raise ConfigError(f"model.{key}", f"expected true or false, got {value!r}")
    return bool(value)


def capsule_from_config(model_cfg: dict[str, object], num_classes: int,
                        load_pretrained: bool = True) -> nn.Module:
    """Build from the ``model`` config section (a plain dict, as stored in model cards); the
    defaults give 3.64M parameters for 3 classes (+0.27M with the decoder). Pretrained weights
    (``encoder_weights``) need a timm ``front_end``; its own convs start from scratch."""
    from tumorscope.models.classifier import NO_WEIGHTS, load_timm_weights

    weights, front = model_cfg.get("encoder_weights"), str(model_cfg.get("front_end", CONVS))
    if load_pretrained and weights not in NO_WEIGHTS and front == CONVS:
        raise ConfigError("model.encoder_weights", "the capsule net's own front end has no "
                          "pretrained weights; set model.encoder_weights=none, or "
                          "model.front_end to a timm model name")
    channels = model_cfg.get("channels", DEFAULT_CHANNELS)
    if not isinstance(channels, list | tuple) or not all(
            isinstance(c, int) and c > 0 for c in channels):
        raise ConfigError("model.channels", f"expected a list of widths, got {channels!r}")
    net = CapsuleNet(
        num_classes=num_classes, in_channels=_int(model_cfg, "in_channels", 1),
        input_size=_int(model_cfg, "input_size", 256), channels=tuple(channels),
        primary_caps=_int(model_cfg, "primary_caps", 48),
        capsule_dim=_int(model_cfg, "capsule_dim", 8),
        class_dim=_int(model_cfg, "class_dim", 16),
        primary_kernel=_int(model_cfg, "primary_kernel", 5),
        routing_iterations=_int(model_cfg, "routing_iterations", 3),
        norm=str(model_cfg.get("norm", "batch")),
        reconstruction=_bool(model_cfg, "reconstruction", False),
        reconstruction_size=_int(model_cfg, "reconstruction_size", 64),
        front=front,
    )
    if load_pretrained and weights not in NO_WEIGHTS:
        load_timm_weights(net.encoder, front, str(weights), net.in_channels)
    return net
