"""What a user arriving from the original projects types: the LGG main.py flags, the data
exploration step, the joint project's command on a CPU, offline pretrained weights."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from fixtures import cli, make_lgg_dataset
from tumorscope.commands.predict import tumour_size


@pytest.fixture(scope="module")
def lgg_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lgg_dataset(tmp_path_factory.mktemp("lgg"), patients=6, slices=12)


@pytest.mark.slow
def test_lgg_flags_verbatim(lgg_root: Path, tmp_path: Path) -> None:
    scan = next((lgg_root / "kaggle_3m").rglob("*_6.tif"))
    res = cli("lgg", "--train", "--test", "--view_aug", "--model", "unet", "--root_dir",
              str(lgg_root), "--num_epochs", "1", "--batch_size", "8", "--lr_scheduler",
              "--gpus", "0", "--run_name", "orig", "--image_path", str(scan), "--out",
              str(tmp_path / "runs"), cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    run = tmp_path / "runs" / "orig"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["data"]["root"] == str(lgg_root) and cfg["trainer"]["epochs"] == 1
    assert cfg["trainer"]["batch_size"] == 8 and cfg["scheduler"]["name"] == "plateau"
    assert cfg["model"]["arch"] == "plain-unet"  # --model unet: the original's plain UNet
    import torch

    if not torch.cuda.is_available():  # --gpus 0 is GPU 0; without one: the CPU, said once
        assert "no GPU 0 on this machine" in res.stdout and cfg["trainer"]["accelerator"] == "cpu"
    assert (run / "augmentations.png").is_file()
    metrics = json.loads((run / "eval-test" / "metrics.json").read_text())
    assert metrics["fold_role"] == "test" and metrics["volumes"]["patients"] >= 1
    assert "per-patient volume Dice" in res.stdout
    assert (run / "predictions" / f"{scan.stem}_overlay.png").is_file()
    assert not any(p.name in ("runs", "orig") for p in lgg_root.rglob("*"))  # data untouched


def test_lgg_refuses_to_write_into_the_dataset(lgg_root: Path, tmp_path: Path) -> None:
    before = sorted(p.relative_to(lgg_root) for p in lgg_root.rglob("*"))
    res = cli("lgg", "--train", "--root_dir", str(lgg_root), "--num_epochs", "1",
              "--out", str(lgg_root / "runs"), cwd=tmp_path)
    assert res.returncode == 2 and "inside the dataset folder" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert sorted(p.relative_to(lgg_root) for p in lgg_root.rglob("*")) == before


def test_lgg_without_an_action_or_with_a_bad_flag(tmp_path: Path) -> None:
    res = cli("lgg", "--model", "unet", cwd=tmp_path)
    assert res.returncode == 2 and "nothing to do" in res.stderr
    res = cli("lgg", "--train", "--model", "vgg", cwd=tmp_path)
    assert res.returncode == 2 and "invalid choice: 'vgg'" in res.stderr


def test_resnext_without_internet_fails_fast_with_advice(lgg_root: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    res = cli("lgg", "--train", "--model", "resnext", "--root_dir", str(lgg_root),
              "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    line = res.stderr.strip().splitlines()[-1]
    assert "cannot fetch imagenet weights for resnext50_32x4d" in line
    assert "efficientnet-lite0-package" in line and "local weights file" in line
    assert time.monotonic() - started < 120  # no half-minute of hub retries


def test_hub_probe_switches_to_offline_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from tumorscope.models import hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    with hub.offline_unless_reachable() as online:
        assert online is False and constants.HF_HUB_OFFLINE is True
    assert constants.HF_HUB_OFFLINE is False  # restored
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: True)
    with hub.offline_unless_reachable() as online:
        assert online is True and constants.HF_HUB_OFFLINE is False


def test_fp16_on_a_cpu_falls_back_with_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from tumorscope.config import load_config
    from tumorscope.training.run import machine_precision

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: 16-mixed is used as asked")
    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "configs/figshare/joint-effb0.yaml")  # the original: 16-mixed
    assert cfg.trainer.precision == "16-mixed"
    assert machine_precision(cfg).trainer.precision == "32"
    note = capsys.readouterr().out.strip()
    assert note.startswith("note:") and len(note.splitlines()) == 1
    assert machine_precision(load_config(None, ["trainer.precision=bf16-mixed"])) \
        .trainer.precision == "bf16-mixed"  # what the CPU has stays


def test_explore_writes_counts_and_pictures(lgg_root: Path, tmp_path: Path) -> None:
    from PIL import Image

    from tumorscope.data import load_index

    res = cli("explore", "--dataset", "lgg", "--root_dir", str(lgg_root), "--folds", "3",
              "--samples", "6", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((tmp_path / "x" / "summary.json").read_text())
    index = load_index("lgg", lgg_root)
    assert summary["slices"] == len(index.records) == 72 and summary["patients"] == 6
    assert summary["tumour_slices"] == sum(r.label for r in index.records)
    assert summary["classes"] == index.class_counts()
    assert set(summary["patients_by_slices"].values()) == {12}
    assert sum(f["patients"] for f in summary["folds"].values()) == 6
    with Image.open(tmp_path / "x" / "samples.png") as grid:
        assert grid.size == (4 * 132, 2 * 132)  # 6 samples, 4 columns, 128 px + 2 px pad
    assert (tmp_path / "x" / "distributions.png").stat().st_size > 1000


def test_predict_table_units() -> None:
    assert tumour_size({"tumour_area_pixels": 10, "tumour_area_mm2": 2.5}) == ("10 px",
                                                                              "2.5 mm²")
    assert tumour_size({"tumour_voxels": 7, "tumour_volume_mm3": None}) == ("7 voxels", "-")
