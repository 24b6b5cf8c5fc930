"""``tumorscope augment --preview``: a grid of training samples and their augmentations, with
the mask outlined, to check an augmentation config by eye (the original ``--view_aug``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tumorscope.config import BratsExperiment, ExperimentConfig, JointExperiment, require_task
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
    if isinstance(cfg, BratsExperiment):
        return brats_preview(cfg, out, variants, seed)
    cfg = require_task(cfg, JointExperiment)
    _, split = prepare_split(cfg)
    m = cfg.model
    records = [r for r in split.train if r.label > 0 or r.mask is None][:: max(1, len(
        split.train) // (samples * 8))][:samples] or split.train[:samples]
    plain = SliceDataset(records, m.in_channels, m.input_size, m.normalization,
                         framing=m.framing)
    augmented = SliceDataset(records, m.in_channels, m.input_size, m.normalization,
                             augment=build_augment(cfg.augment), framing=m.framing)
    augmented._cache = plain._cache = {}
    rows = []
    for i in range(len(records)):
        cells = [plain[i]] + [augmented[i] for _ in range(variants)]
        tiles = [overlay(c["image"].numpy(), None, c["mask"].numpy()[0] > 0.5) for c in cells]
        rows.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0))) for t in tiles], 1))
    return write_png(out, np.concatenate(rows, 0))


def brats_preview(cfg: BratsExperiment, out: Path, variants: int = 4, seed: int = 0) -> Path:
    """For the first training case: one row per configured TorchIO transform (then all of
    them), the axial FLAIR slice through the tumour with the regions coloured, original first."""
    import copy

    import torchio as tio

    from tumorscope.data.brats import preprocessing
    from tumorscope.io.brats import MODALITIES, read_case
    from tumorscope.reporting.regions import _display, _gray, _paint, tumour_centre
    from tumorscope.transforms.augment3d import apply_augment3d, build_augment3d

    _, split = prepare_split(cfg)
    case = read_case(split.train[0].image, missing=cfg.prep.missing_modality,
                     label_map=cfg.prep.label_map)
    pre = preprocessing(cfg)
    image, geometry = pre(case.image, case.spacing)
    labels = pre.labels(case.labels, geometry) if case.labels is not None else \
        np.zeros(geometry.grid, np.uint8)
    flair = MODALITIES.index("flair")
    everything = build_augment3d(cfg.augment)
    transforms = [*(everything.transforms if everything is not None else []), everything]

    def tile(volume: np.ndarray, lab: np.ndarray) -> np.ndarray:
        z = tumour_centre(labels)[2]
        return np.pad(_display(_paint(_gray(volume[flair][:, :, z]), lab[:, :, z])),
                      ((2, 2), (2, 2), (0, 0)))

    def certain(transform: tio.Transform) -> tio.Transform:
        """The transform applied every time (its probability set to 1) for the preview."""
        if isinstance(transform, tio.Compose):
            return transform
        always = copy.deepcopy(transform)
        for attribute in ("probability", "flip_probability"):
            if hasattr(always, attribute):
                setattr(always, attribute, 1.0)
        return always

    rows = []
    for k, transform in enumerate(t for t in transforms if t is not None):
        cells = [tile(image, labels)]
        always = certain(transform)
        for v in range(variants):
            aug_image, aug_labels = apply_augment3d(always, image, labels, seed + 100 * k + v)
            cells.append(tile(aug_image, aug_labels))
        rows.append(np.concatenate(cells, 1))
    return write_png(out, np.concatenate(rows, 0))
