"""LGG dataset: real tif layout, numeric slice order, splits, volume evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fixtures import make_lgg_dataset
from tumorscope.data import load_index
from tumorscope.data.splits import make_split
from tumorscope.io import read_mask
from tumorscope.metrics import dice_iou


@pytest.fixture(scope="module")
def lgg_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lgg_dataset(tmp_path_factory.mktemp("lgg"))


def test_index_orders_slices_numerically(lgg_root: Path) -> None:
    index = load_index("lgg", lgg_root)
    assert index.classes == ["no tumour", "tumour"]
    assert len(index.records) == 6 * 12 and len(index.patients) == 6
    first = [r for r in index.records if r.patient == index.patients[0]]
    assert [r.position for r in first] == list(range(1, 13))  # _2 before _10
    assert first[9].image.name.endswith("_10.tif")
    assert index.info["clinical"]["TCGA_XX_1000"]["RNASeqCluster"] == "0"
    background = [r for r in index.records if r.patient == index.patients[-1]]
    assert all(r.label == 0 for r in background)


def test_plain_and_jpeg_tiff_both_read(tmp_path: Path) -> None:
    from tumorscope.data.slices import load_record

    for jpeg in (True, False):
        root = make_lgg_dataset(tmp_path / f"j{jpeg}", patients=1, slices=3, jpeg=jpeg)
        image, mask = load_record(load_index("lgg", root).records[0])
        assert image.shape == (3, 64, 64) and image.dtype == np.uint8 and mask.shape == (64, 64)


def test_missing_mask_is_named(tmp_path: Path) -> None:
    from tumorscope.errors import ScanReadError

    root = make_lgg_dataset(tmp_path, patients=1, slices=3)
    mask = next((root / "kaggle_3m").rglob("*_2_mask.tif"))
    mask.unlink()
    with pytest.raises(ScanReadError, match=r"_2_mask\.tif: mask missing"):
        load_index("lgg", root)


def test_split_by_patient_stratified_by_tumour(lgg_root: Path) -> None:
    index = load_index("lgg", lgg_root)
    split = make_split(index, 3, 0, 1, seed=1, source="computed")
    sides = [{r.patient for r in part} for part in (split.train, split.val, split.test)]
    assert sum(len(s) for s in sides) == 6 and not (sides[0] & sides[1] or sides[0] & sides[2])


@pytest.mark.slow
def test_train_and_evaluate_writes_volumes(lgg_root: Path, tmp_path: Path) -> None:
    from fixtures import cli

    cfg = tmp_path / "lgg.yaml"
    cfg.write_text(f"""name: tiny-lgg
data: {{dataset: lgg, root: {lgg_root}, folds: 3, test_fold: 0, val_fold: 1,
        fold_source: computed}}
model: {{arch: plain-unet, encoder: none, encoder_weights: none, attention: none,
         in_channels: 3, input_size: 64}}
ema: {{enabled: false}}
trainer: {{epochs: 1, batch_size: 8, accelerator: cpu}}
output: {{root: {tmp_path / 'runs'}}}
""")
    res = cli("train", "--config", str(cfg), "--lr-scheduler", "plateau", "--test",
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    out = tmp_path / "runs" / "tiny-lgg" / "eval-test"
    metrics = json.loads((out / "metrics.json").read_text())
    volumes = metrics["volumes"]
    assert volumes["patients"] == metrics["split"]["patients"] == 2
    per_patient = volumes["per_patient"]
    assert volumes["dice_mean_per_patient"] == pytest.approx(np.mean(list(per_patient.values())))
    low, high = volumes["dice_mean_per_patient_ci"]  # stored once, read by card and compare
    assert low <= volumes["dice_mean_per_patient"] <= high
    assert set(volumes["detection"]) >= {"sensitivity", "specificity"}
    for patient, files in volumes["files"].items():
        import nibabel as nib
        from PIL import Image

        predicted = np.asarray(nib.load(str(out / "patients" / files["nifti"])).dataobj) > 0
        assert predicted.shape == (64, 64, 12)
        case = lgg_root / "kaggle_3m" / patient  # the volume Dice, recomputed from the files
        true = np.stack([read_mask(case / f"{patient}_{n}_mask.tif") for n in range(1, 13)], -1)
        assert dice_iou(predicted, true)[0] == pytest.approx(per_patient[patient])
        with Image.open(out / "patients" / files["gif"]) as gif:
            assert gif.n_frames == 12, patient
    assert "Patient volumes" in (out / "report.html").read_text()
    assert f"[{low:.3f}, {high:.3f}]" in (out / "report.html").read_text()
    card = json.loads((tmp_path / "runs/tiny-lgg/model/model.json").read_text())
    assert card["training_config"]["scheduler"]["name"] == "plateau"


@pytest.mark.realdata
def test_real_lgg_loads(shared_data: Path) -> None:
    from tumorscope.data.slices import load_record

    index = load_index("lgg", shared_data / "lgg")
    assert len(index.records) == 3929 and len(index.patients) == 110
    assert index.class_counts()["tumour"] == 1373
    image, mask = load_record(index.records[0])
    assert image.shape == (3, 256, 256) and mask.shape == (256, 256)
    split = make_split(index, 5, 0, 1, seed=42, source="computed")
    assert not {r.patient for r in split.train} & {r.patient for r in split.test}


def test_augment_preview_grid(lgg_root: Path, tmp_path: Path) -> None:
    from PIL import Image

    from fixtures import cli

    cfg = tmp_path / "a.yaml"
    cfg.write_text(f"data: {{dataset: lgg, root: {lgg_root}, fold_source: computed, folds: 3}}\n"
                   "model: {in_channels: 3, input_size: 64}\n")
    res = cli("augment", "--config", str(cfg), "--preview", "--samples", "3", "--out",
              str(tmp_path / "grid.png"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (5 * 68, 3 * 68)  # original + 4 augmentations, 3 samples, 2px pad


def test_predict_image_path_flag(tmp_path: Path, lgg_root: Path) -> None:
    from fixtures import cli, save_random_model

    model = save_random_model(tmp_path / "m")
    scan = next((lgg_root / "kaggle_3m").rglob("*_5.tif"))
    res = cli("predict", "--image-path", str(scan), "--checkpoint", str(model), "--out",
              str(tmp_path / "o"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "o" / f"{scan.stem}_overlay.png").is_file()
    none = cli("predict", "--checkpoint", str(model), cwd=tmp_path)
    assert none.returncode == 2 and "at least one scan" in none.stderr
