"""`make run` on a fresh machine: the demo needs no dataset, only what ships with tumorscope."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tumorscope.demo import bundled_examples
from tumorscope.io import read_mask, read_scan
from tumorscope.io.brats import read_case
from tumorscope.metrics import dice_iou


def test_bundled_examples_are_real_held_out_slices() -> None:
    examples = bundled_examples()
    assert {e.true_class for e in examples if e.dataset == "figshare"} == \
        {"meningioma", "glioma", "pituitary"}
    total = 0
    for e in examples:
        if e.dataset == "brats":  # a case folder: four modalities and the segmentation
            case = read_case(e.image)
            assert case.labels is not None and case.labels.any() and not case.filled
            total += sum(p.stat().st_size for p in e.image.iterdir())
            continue
        scan = read_scan(e.image)
        has_tumour = read_mask(e.mask, expected_shape=scan.spatial_shape).any()
        assert has_tumour == (e.true_class != "no tumour"), e.mask
        total += e.image.stat().st_size + e.mask.stat().st_size
    assert {e.dataset for e in examples} == {"figshare", "lgg", "brats", "brats-slices"}
    assert sum(e.true_class == "no tumour" for e in examples) == 2
    assert total < 3 * 2**20


def test_demo_runs_without_the_datasets(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TUMORSCOPE_DATA"}
    env["HF_HUB_OFFLINE"] = "1"
    exe = Path(sys.executable).with_name("tumorscope")
    res = subprocess.run([str(exe), "demo", "--out", "out"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").rglob("*.json"))
               if p.parent.name != "segmentations"]
    from tumorscope.checkpoint.store import read_card
    from tumorscope.locations import default_checkpoint, shipped_checkpoints

    default_id = read_card(default_checkpoint()).id
    default = [r for r in records if r.get("model_id") == default_id]
    assert {"meningioma", "glioma", "pituitary"} <= {r["true_class"] for r in default}
    if "no tumour" in read_card(default_checkpoint()).classes:  # tumour-free examples too
        assert sum(r["true_class"] == "no tumour" for r in default) == 2
    outlines = read_card(default_checkpoint()).model.get("outlines") or []
    if outlines:  # each example drawn in its own dataset's outline, as evaluation scores it
        datasets = {e.image.name: e.dataset for e in bundled_examples()}
        for r in default:
            dataset = datasets.get(Path(r["file"]).name, "figshare")
            wanted = {"brats-slices": "brats"}.get(dataset, dataset)
            assert r["outline"] == (wanted if wanted in outlines else outlines[0]), r["file"]
    shipped = {model.name for model in shipped_checkpoints()}
    if "lgg" in shipped:  # the LGG model predicts the bundled LGG slices
        assert sorted(r["true_class"] for r in records if r["model_id"].startswith("lgg-")) \
            == ["no tumour", "tumour"]
    if "brats" in shipped:  # the BraTS model segments the bundled case, scored per region
        (case,) = [r for r in records if "case" in r]
        assert set(case["dice"]) == {"WT", "TC", "ET"}
        assert (tmp_path / "out" / case["outputs"]["segmentation"]).is_file()
        records = [r for r in records if "case" not in r]
    truth = {e.image.name: e.mask for e in bundled_examples()}
    if "capsule" in shipped:  # the shipped classifier names each bundled figshare slice
        assert sorted(r["true_class"] for r in records if r["segmentation"] is False) \
            == ["glioma", "meningioma", "pituitary"]
    for r in records:
        assert set(r["probabilities"]) and np.isclose(sum(r["probabilities"].values()), 1.0)
        if r["segmentation"] is False:  # a classifier: class and probabilities, no outline
            assert r["dice"] is None and r["outputs"] == {}
            continue
        predicted = read_mask(tmp_path / r["outputs"]["mask"])  # paths relative to cwd
        true = read_mask(truth[Path(r["file"]).name])
        assert r["dice"] == pytest.approx(dice_iou(predicted, true)[0])  # scored for real
        assert (tmp_path / r["outputs"]["overlay"]).is_file()
    assert "Dice" in res.stdout and "Traceback" not in res.stderr
