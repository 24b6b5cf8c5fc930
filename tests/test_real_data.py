"""Smoke tests on the real datasets in ../shared/data (skip with a reason when absent)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tumorscope.data import load_index
from tumorscope.data.slices import SliceDataset, load_record
from tumorscope.data.splits import make_split

pytestmark = pytest.mark.realdata


def test_figshare_counts_and_folds(shared_data: Path) -> None:
    index = load_index("figshare", shared_data / "figshare")
    assert len(index.records) == 3064
    assert len(index.patients) == 233
    assert index.class_counts() == {"meningioma": 708, "glioma": 1426, "pituitary": 930}
    slices_per_fold = Counter(r.fold for r in index.records)
    assert [slices_per_fold[f] for f in range(5)] == [542, 679, 572, 628, 643]
    split = make_split(index, 5, test_fold=0, val_fold=1, seed=0)
    train_p = {r.patient for r in split.train}
    assert not train_p & {r.patient for r in split.test}
    assert not train_p & {r.patient for r in split.val}
    assert len(split.test) == 542


def test_figshare_samples_load(shared_data: Path) -> None:
    index = load_index("figshare", shared_data / "figshare")
    image, mask = load_record(index.records[0])
    assert image.shape == (1, 512, 512) and mask.shape == (512, 512) and mask.any()
    ds = SliceDataset(index.records[:4], channels=1, size=128, normalization="instance")
    item = ds[0]
    assert item["image"].shape == (1, 128, 128) and item["mask"].shape == (1, 128, 128)
    assert abs(float(item["image"].mean())) < 1e-3 and item["mask"].sum() > 0
    assert np.isfinite(item["image"].numpy()).all()
