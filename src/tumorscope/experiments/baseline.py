"""The baseline the original projects' scripts used: a plain PyTorch loop (fixed-LR Adam,
no augmentation, no EMA, no scheduler, fp32), same architecture and initialisation."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tumorscope.checkpoint.card import build_card
from tumorscope.checkpoint.store import save_checkpoint
from tumorscope.config import JointExperiment
from tumorscope.data.prepare import prepare_split
from tumorscope.data.slices import SliceDataset
from tumorscope.models import joint_from_config
from tumorscope.models.joint import own_outline
from tumorscope.progress import track
from tumorscope.transforms.slice2d import card_preprocessing


def train_plain(cfg: JointExperiment, out: Path) -> Path:
    """Train for ``cfg.trainer.epochs`` with a bare loop; writes ``out/model``."""
    if (out / "model" / "model.json").is_file():
        return out / "model"
    torch.manual_seed(cfg.training_seed)
    random.seed(cfg.training_seed)
    np.random.seed(cfg.training_seed)
    index, split = prepare_split(cfg)
    m = cfg.model
    data = SliceDataset(split.train, m.in_channels, m.input_size, m.normalization, cache=True,
                        outlines=m.outlines, framing=m.framing)
    loader = DataLoader(data, batch_size=cfg.trainer.batch_size, shuffle=True)
    model = joint_from_config(m.model_dump(), len(index.classes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for epoch in range(cfg.trainer.epochs):
        for batch in track(loader, f"baseline epoch {epoch}"):
            mask_logits, class_logits = model(batch["image"])
            loss = F.binary_cross_entropy_with_logits(own_outline(mask_logits, batch["outline"]),
                                                      batch["mask"]) + \
                F.cross_entropy(class_logits, batch["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
    card = build_card(cfg, index, split, card_preprocessing(cfg, None),
                      recipe="plain PyTorch loop: Adam 1e-3, BCE + CE, no augmentation, no EMA, "
                      "no scheduler, fp32")
    return Path(save_checkpoint(out / "model", model.state_dict(), card)).parent
