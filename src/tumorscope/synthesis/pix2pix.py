"""pix2pix (Isola et al., 2017) for labelled MRI slices.

The generator (a MONAI U-Net) turns a conditioning tensor -- a coarse anatomy map (head
silhouette and outline), the tumour mask and one plane per class -- into a slice; a PatchGAN
discriminator judges (condition, slice) pairs. Loss: least-squares adversarial + ``l1_weight``
x L1 to the real slice.

A training folder holds ``pix2pix.pt`` (both networks, both optimisers, step and loss history:
plain state dicts, read back with ``torch.load(weights_only=True)``), the generator alone as
``generator.safetensors`` + ``generator.json``, ``losses.csv`` and ``patients.json`` (the
patients it learnt from, for the leakage guard).
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tumorscope.data.records import Record
from tumorscope.errors import CheckpointError, ConfigError
from tumorscope.io.writers import atomic_path, write_atomic, write_json
from tumorscope.transforms.brain_mask import head_mask

logger = logging.getLogger(__name__)

STATE = "pix2pix.pt"
GENERATOR = "generator.safetensors"
CARD = "generator.json"
PATIENTS = "patients.json"
LOSSES = "losses.csv"
FORMAT = "tumorscope-pix2pix"
LOSS_NAMES = ("d", "g_adv", "l1")


# --- conditioning ------------------------------------------------------------------------

def anatomy_map(image01: np.ndarray) -> np.ndarray:
    """Coarse ``(H, W)`` float32 map: 0 outside the head, 0.5 inside, 1 on its outline (the
    morphological gradient), so the generator must invent all texture."""
    from scipy import ndimage
    from skimage.morphology import disk

    head = head_mask(image01)
    footprint = disk(max(1, image01.shape[0] // 128))
    edge = ndimage.binary_dilation(head, footprint) & ~ndimage.binary_erosion(head, footprint)
    return np.where(edge, 1.0, np.where(head, 0.5, 0.0)).astype(np.float32)


def stack_condition(anatomy: np.ndarray, mask: np.ndarray, label: int,
                    num_classes: int) -> np.ndarray:
    """``(2 + num_classes, H, W)`` float32: anatomy map, tumour mask, one-hot class planes."""
    if anatomy.shape != mask.shape:
        raise ValueError(f"anatomy {anatomy.shape} and mask {mask.shape} differ in shape")
    if not 0 <= label < num_classes:
        raise ValueError(f"label {label} is not in 0..{num_classes - 1}")
    planes = np.zeros((2 + num_classes, *anatomy.shape), dtype=np.float32)
    planes[0] = anatomy
    planes[1] = mask
    planes[2 + label] = 1.0
    return planes


def condition(image01: np.ndarray, mask: np.ndarray, label: int, num_classes: int) -> np.ndarray:
    """Conditioning tensor ``(2 + num_classes, H, W)`` of a real ``(H, W)`` slice in [0, 1]."""
    return stack_condition(anatomy_map(image01), mask.astype(bool), label, num_classes)


def load_slice(record: Record, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A record's gray ``(size, size)`` float32 image in [0, 1] and bool mask."""
    from tumorscope.data.slices import load_record
    from tumorscope.transforms.slice2d import model_pair

    image, mask = model_pair(*load_record(record), 1, size, record.image)
    return image[0], mask.astype(bool)


# --- networks ----------------------------------------------------------------------------

@dataclass(frozen=True)
class GanSettings:
    """What a pix2pix run was built and trained with (``generator.json``)."""

    size: int
    classes: tuple[str, ...]
    base_channels: int = 32
    seed: int = 0
    lr: float = 2e-4
    l1_weight: float = 100.0
    batch_size: int = 8

    @property
    def in_channels(self) -> int:
        return 2 + len(self.classes)

    def card(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self), "classes": list(self.classes)}

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> GanSettings:
        fields = {k: v for k, v in card.items() if k in cls.__dataclass_fields__}
        return cls(**{**fields, "classes": tuple(card["classes"])})


def check_size(size: int) -> None:
    """The generator halves the image four times and the discriminator needs 32 px."""
    if size < 32 or size % 16:
        raise ConfigError("size", f"{size} px: the pix2pix size must be a multiple of 16, "
                          "at least 32")


def build_generator(settings: GanSettings) -> nn.Module:
    """MONAI U-Net (four down-samplings), then a 1x1 convolution and tanh: output in [-1, 1].

    The U-Net ends in ``base_channels`` feature maps, not one: its top block normalises its
    output per image (instance norm + PReLU), which squeezed through a single channel can
    leave the generator stuck at a flat grey slice from some initialisations.
    """
    from monai.networks.nets import UNet

    c = settings.base_channels
    unet = UNet(spatial_dims=2, in_channels=settings.in_channels, out_channels=c,
                channels=(c, 2 * c, 4 * c, 8 * c, 8 * c), strides=(2, 2, 2, 2), num_res_units=1)
    return nn.Sequential(unet, nn.Conv2d(c, 1, kernel_size=1), nn.Tanh())


def build_discriminator(settings: GanSettings) -> nn.Module:
    """MONAI PatchGAN discriminator over (condition, slice) pairs."""
    from monai.networks.nets import PatchDiscriminator

    return PatchDiscriminator(spatial_dims=2, channels=2 * settings.base_channels,
                              in_channels=settings.in_channels + 1, out_channels=1,
                              num_layers_d=3)


class Pix2Pix:
    """Both networks, their Adam optimisers and one adversarial + L1 training step."""

    def __init__(self, settings: GanSettings, device: torch.device) -> None:
        from monai.losses import PatchAdversarialLoss

        torch.manual_seed(settings.seed)
        self.settings, self.device = settings, device
        self.generator = build_generator(settings).to(device)
        self.discriminator = build_discriminator(settings).to(device)
        betas = (0.5, 0.999)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=settings.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=settings.lr,
                                      betas=betas)
        self.adversarial = PatchAdversarialLoss(criterion="least_squares")

    def _judge(self, cond: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.discriminator(torch.cat([cond, image], dim=1))[-1]

    def _adv(self, scores: torch.Tensor, real: bool, for_discriminator: bool) -> torch.Tensor:
        loss = self.adversarial(scores, target_is_real=real, for_discriminator=for_discriminator)
        assert isinstance(loss, torch.Tensor)
        return loss

    def step(self, cond: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
        """One discriminator then one generator update; the three losses."""
        self.generator.train()
        self.discriminator.train()
        fake = self.generator(cond)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d = 0.5 * (self._adv(self._judge(cond, real), True, True)
                        + self._adv(self._judge(cond, fake.detach()), False, True))
        loss_d.backward()
        self.opt_d.step()
        self.opt_g.zero_grad(set_to_none=True)
        adv = self._adv(self._judge(cond, fake), True, False)
        l1 = torch.nn.functional.l1_loss(fake, real)
        (adv + self.settings.l1_weight * l1).backward()
        self.opt_g.step()
        return {"d": loss_d.item(), "g_adv": adv.item(), "l1": l1.item()}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.state_dict(),
                "discriminator": self.discriminator.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])


# --- training data -----------------------------------------------------------------------

@dataclass
class SliceBank:
    """The training slices at the GAN's size, in memory: images in [0, 1], masks, anatomy."""

    images: np.ndarray  # (N, S, S) float16
    masks: np.ndarray  # (N, S, S) bool
    anatomy: np.ndarray  # (N, S, S) float16
    labels: np.ndarray  # (N,) int

    def batch(self, rng: np.random.Generator, batch_size: int, num_classes: int,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Random (condition, target in [-1, 1]) pairs, each mirrored left-right half the time."""
        picks = rng.integers(0, len(self.labels), batch_size)
        flips = rng.random(batch_size) < 0.5
        conds, targets = [], []
        for i, flip in zip(picks, flips, strict=True):
            cond = stack_condition(self.anatomy[i].astype(np.float32), self.masks[i],
                                   int(self.labels[i]), num_classes)
            target = self.images[i][None].astype(np.float32) * 2 - 1
            if flip:
                cond, target = cond[..., ::-1], target[..., ::-1]
            conds.append(cond)
            targets.append(target)
        return (torch.from_numpy(np.ascontiguousarray(np.stack(conds))).to(device),
                torch.from_numpy(np.ascontiguousarray(np.stack(targets))).to(device))


def load_bank(records: Sequence[Record], size: int) -> SliceBank:
    """Read every record once (progress bar) into a :class:`SliceBank`."""
    from tumorscope.progress import track

    images, masks, anatomy = [], [], []
    for record in track(records, "reading slices for pix2pix", total=len(records)):
        image, mask = load_slice(record, size)
        images.append(image.astype(np.float16))
        masks.append(mask)
        anatomy.append(anatomy_map(image).astype(np.float16))
    return SliceBank(np.stack(images), np.stack(masks), np.stack(anatomy),
                     np.array([r.label for r in records], dtype=np.int64))


# --- state on disk -----------------------------------------------------------------------

def load_state(path: Path) -> dict[str, Any]:
    """A saved training state, read without running code from it; one-line errors."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(path, "refused: it holds more than tensors and plain values, so "
                              "loading it could run code") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(path, f"not a readable pix2pix state ({type(err).__name__})"
                              ) from None
    if not isinstance(state, dict) or not {"step", "settings", "generator"} <= set(state):
        raise CheckpointError(path, "not a pix2pix training state")
    return state


def save_state(out_dir: Path, gan: Pix2Pix, step: int, losses: list[list[float]],
               patients: list[str]) -> None:
    """Training state, generator weights + card and the loss table, each written atomically."""
    from safetensors.torch import save_file

    state = {"step": step, "settings": gan.settings.card(), "patients": patients,
             "losses": losses, **gan.state_dict()}
    with atomic_path(out_dir / STATE) as tmp:
        torch.save(state, tmp)
    weights = {k: v.detach().cpu().contiguous() for k, v in gan.generator.state_dict().items()}
    write_atomic(out_dir / GENERATOR, lambda p: save_file(weights, str(p)))
    write_json(out_dir / CARD, {**gan.settings.card(), "step": step, "patients_file": PATIENTS})
    rows = ["step," + ",".join(LOSS_NAMES)]
    rows += [f"{int(r[0])}," + ",".join(f"{v:.6g}" for v in r[1:]) for r in losses]
    write_atomic(out_dir / LOSSES, lambda p: p.write_text("\n".join(rows) + "\n"))


def load_generator(generator_dir: Path, device: torch.device | None = None
                   ) -> tuple[nn.Module, GanSettings]:
    """The trained generator (eval mode) and its settings, from safetensors + JSON."""
    import json

    from safetensors.torch import load_file

    card_path, weights = generator_dir / CARD, generator_dir / GENERATOR
    if not card_path.is_file() or not weights.is_file():
        raise CheckpointError(generator_dir, f"no trained pix2pix generator ({CARD} and "
                              f"{GENERATOR} expected)")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        if not isinstance(card, dict) or card.get("format") != FORMAT:
            raise ValueError
        settings = GanSettings.from_card(card)
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(card_path, f"not a {FORMAT} generator card") from None
    generator = build_generator(settings)
    try:
        generator.load_state_dict(load_file(str(weights)))
    except (RuntimeError, OSError) as err:
        raise CheckpointError(weights, f"does not match its card ({str(err).splitlines()[0]})"
                              ) from None
    return generator.to(device or torch.device("cpu")).eval(), settings


# --- training ----------------------------------------------------------------------------

def pick_device(device: str | None) -> torch.device:
    """``device``, or CUDA when available, else CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _resume(gan: Pix2Pix, out_dir: Path, patients: list[str]) -> tuple[int, list[list[float]]]:
    """Load the saved state into ``gan`` after checking it is the same run; (step, losses)."""
    state = load_state(out_dir / STATE)
    saved = GanSettings.from_card(state["settings"])
    for name in ("size", "classes", "base_channels"):
        if getattr(saved, name) != getattr(gan.settings, name):
            raise ConfigError(out_dir, f"cannot resume: saved run has {name}="
                              f"{getattr(saved, name)}, this one {getattr(gan.settings, name)}")
    if list(state["patients"]) != patients:
        raise ConfigError(out_dir, "cannot resume: the saved run learnt from other patients "
                          f"({PATIENTS}); train in a new folder")
    gan.load_state_dict(state)
    return int(state["step"]), [list(map(float, row)) for row in state["losses"]]


def _start(out_dir: Path, resume: bool) -> None:
    """Refuse to overwrite a run, or to resume one that is not there."""
    exists = (out_dir / STATE).is_file()
    if exists and not resume:
        raise ConfigError(out_dir, "already holds a pix2pix run; resume it (--resume) or "
                          "choose another folder")
    if resume and not exists:
        raise ConfigError(out_dir, f"no pix2pix run to resume ({STATE} not found)")


def train_pix2pix(records: Sequence[Record], out_dir: Path, classes: Sequence[str],
                  size: int = 128, steps: int = 2000, batch_size: int = 8, seed: int = 0,
                  lr: float = 2e-4, l1_weight: float = 100.0, base_channels: int = 32,
                  save_every: int = 500, log_every: int = 50, resume: bool = False,
                  device: str | None = None) -> Path:
    """Train pix2pix on ``records`` (training-fold slices only) into ``out_dir``; resumable.

    Batches depend only on ``(seed, step)``, so a resumed run draws what an uninterrupted one
    would. Returns ``out_dir``.
    """
    from tumorscope.progress import track

    check_size(size)
    if not records:
        raise ConfigError("records", "no training slices for pix2pix")
    if steps < 1 or batch_size < 1 or save_every < 1:
        raise ConfigError("steps", "steps, batch size and save interval must be positive")
    out_dir = Path(out_dir)
    _start(out_dir, resume)
    patients = sorted({r.patient for r in records})
    settings = GanSettings(size, tuple(classes), base_channels, seed, lr, l1_weight, batch_size)
    gan = Pix2Pix(settings, pick_device(device))
    start, losses = _resume(gan, out_dir, patients) if resume else (0, [])
    if not resume:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / PATIENTS, {"patients": patients, "slices": len(records),
                                        "records": sorted(r.id for r in records)})
    if start < steps:
        logger.info("pix2pix: %d slices of %d patients, steps %d -> %d", len(records),
                    len(patients), start, steps)
        bank = load_bank(records, size)
        for step in track(range(start, steps), "training pix2pix", total=steps - start):
            out = gan.step(*bank.batch(np.random.default_rng([seed, step]), batch_size,
                                       len(classes), gan.device))
            losses.append([step + 1, *(out[k] for k in LOSS_NAMES)])
            _report(step + 1, out, log_every)
            if (step + 1) % save_every == 0:
                save_state(out_dir, gan, step + 1, losses, patients)
    save_state(out_dir, gan, max(start, steps), losses, patients)
    return out_dir


def _report(step: int, losses: dict[str, float], every: int) -> None:
    if step % every == 0:
        logger.info("pix2pix step %d: D %.4f, G adversarial %.4f, L1 %.4f", step, losses["d"],
                    losses["g_adv"], losses["l1"])
