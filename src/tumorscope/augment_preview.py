"""``tumorscope augment --preview``: a grid of training samples and their augmentations, with
the mask outlined, to check an augmentation config by eye (the original ``--view_aug``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tumorscope.config import ExperimentConfig, JointExperiment, require_task
from tumorscope.data.prepare import prepare_split
from tumorscope.data.slices import SliceDataset
from tumorscope.io.writers import write_png
from tumorscope.reporting.overlay import overlay
from tumorscope.transforms.augment import build_augment


def preview_grid(cfg: ExperimentConfig, out: Path, samples: int = 6, variants: int = 4,
                 seed: int = 0) -> Path:
    """Rows: training samples with tumour; columns: original, then ``variants`` augmentations."""
    import random

    random.seed(seed)
    np.random.seed(seed)
    cfg = require_task(cfg, JointExperiment)
    _, split = prepare_split(cfg)
    m = cfg.model
    records = [r for r in split.train if r.label > 0 or r.mask is None][:: max(1, len(
        split.train) // (samples * 8))][:samples] or split.train[:samples]
    plain = SliceDataset(records, m.in_channels, m.input_size, m.normalization)
    augmented = SliceDataset(records, m.in_channels, m.input_size, m.normalization,
                             augment=build_augment(cfg.augment))
    augmented._cache = plain._cache = {}
    rows = []
    for i in range(len(records)):
        cells = [plain[i]] + [augmented[i] for _ in range(variants)]
        tiles = [overlay(c["image"].numpy(), None, c["mask"].numpy()[0] > 0.5) for c in cells]
        rows.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0))) for t in tiles], 1))
    return write_png(out, np.concatenate(rows, 0))
