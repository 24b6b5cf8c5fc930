"""pix2pix synthesis: conditioning, a tiny resumable GAN run, the synthetic dataset it writes,
the leakage guard and the Fréchet distance."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fixtures import blob_slice, write_config
from tumorscope.cli import main
from tumorscope.data import DatasetIndex, load_index
from tumorscope.errors import ConfigError
from tumorscope.synthesis.generate import check_no_leak, synthesize
from tumorscope.synthesis.pix2pix import (
    GENERATOR,
    PATIENTS,
    STATE,
    condition,
    load_generator,
    load_state,
    train_pix2pix,
)
from tumorscope.synthesis.realism import frechet_distance, image_features, record_images

TINY = {"size": 32, "batch_size": 2, "base_channels": 8, "seed": 5}


@pytest.fixture(scope="module")
def index(mat_dataset: Path) -> DatasetIndex:
    return load_index("figshare-mat", mat_dataset)


@pytest.fixture(scope="module")
def generator(index: DatasetIndex, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_pix2pix(index.records[:12], tmp_path_factory.mktemp("gan") / "g", index.classes,
                         steps=4, save_every=2, **TINY)


def test_condition_has_anatomy_mask_and_one_hot_class_planes() -> None:
    image, mask = blob_slice(64, 1, np.random.default_rng(0))
    image01 = (image - image.min()) / np.ptp(image)
    cond = condition(image01, mask, label=2, num_classes=3)
    assert cond.shape == (5, 64, 64) and cond.dtype == np.float32
    assert set(np.unique(cond[0])) == {0.0, 0.5, 1.0}  # outside, head, outline
    assert cond[0, 0, 0] == 0 and cond[0, 32, 32] == 0.5
    assert np.array_equal(cond[1], mask.astype(np.float32))
    assert cond[4].min() == 1 and cond[2:4].max() == 0
    with pytest.raises(ValueError, match="label 3"):
        condition(image01, mask, label=3, num_classes=3)


def test_tiny_training_makes_a_generator_of_the_requested_size(generator: Path) -> None:
    net, settings = load_generator(generator)
    assert settings.size == 32 and settings.classes == ("meningioma", "glioma", "pituitary")
    out = net(torch.zeros(2, 2 + 3, 32, 32))
    assert out.shape == (2, 1, 32, 32) and out.abs().max() <= 1
    assert load_state(generator / STATE)["step"] == 4
    losses = (generator / "losses.csv").read_text().splitlines()
    assert losses[0] == "step,d,g_adv,l1" and len(losses) == 5


def test_resume_continues_from_the_saved_step(index: DatasetIndex, tmp_path: Path) -> None:
    records = index.records[:12]
    train_pix2pix(records, tmp_path / "a", index.classes, steps=2, save_every=1, **TINY)
    assert load_state(tmp_path / "a" / STATE)["step"] == 2
    with pytest.raises(ConfigError, match="already holds a pix2pix run"):
        train_pix2pix(records, tmp_path / "a", index.classes, steps=4, **TINY)
    with pytest.raises(ConfigError, match="no pix2pix run to resume"):
        train_pix2pix(records, tmp_path / "none", index.classes, steps=4, resume=True, **TINY)
    train_pix2pix(records, tmp_path / "a", index.classes, steps=4, resume=True, **TINY)
    train_pix2pix(records, tmp_path / "b", index.classes, steps=4, **TINY)
    resumed, straight = load_state(tmp_path / "a" / STATE), load_state(tmp_path / "b" / STATE)
    assert resumed["step"] == 4 and [r[0] for r in resumed["losses"]] == [1, 2, 3, 4]
    for name, tensor in straight["generator"].items():  # same batches: the same network
        torch.testing.assert_close(resumed["generator"][name], tensor, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="other patients"):
        train_pix2pix(index.records[12:], tmp_path / "a", index.classes, steps=6, resume=True,
                      **TINY)


def test_synthesize_writes_a_readable_labelled_dataset(generator: Path, index: DatasetIndex,
                                                       tmp_path: Path) -> None:
    records = index.records[:12]
    out = synthesize(generator, records, 7, tmp_path / "syn", seed=1, batch_size=3)
    with (out / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [f"syn-{i:05d}" for i in range(7)]
    assert [int(r["label"]) for r in rows] == [0, 1, 2, 0, 1, 2, 0]  # classes in turn
    by_id = {r.id: r for r in records}
    for row in rows:
        source = by_id[row["source_id"]]
        assert row["source_patient"] == source.patient and int(row["label"]) == source.label
        assert row["class"] == index.classes[source.label]
        image = np.asarray(Image.open(out / "images" / f"{row['id']}.png"))
        assert image.shape == (32, 32) and image.dtype == np.uint8
        assert (out / "masks" / f"{row['id']}.png").is_file()
    assert json.loads((out / "classes.json").read_text()) == index.classes
    assert (out / "samples.png").stat().st_size > 0
    synthetic = load_index("synthetic", out)
    assert len(synthetic.records) == 7 and synthetic.classes == index.classes
    assert {r.patient for r in synthetic.records} == {f"synthetic-{r['source_patient']}"
                                                      for r in rows}
    assert all(r.fold is None for r in synthetic.records)
    assert record_images(synthetic.records[:2], 32).shape == (2, 1, 32, 32)
    with pytest.raises(ConfigError, match="already holds a synthetic dataset"):
        synthesize(generator, records, 2, out)


def test_leak_guard_raises_on_a_held_out_patient(generator: Path, index: DatasetIndex,
                                                 tmp_path: Path) -> None:
    out = synthesize(generator, index.records[:12], 3, tmp_path / "syn")
    manifest = out / "manifest.csv"
    sources = {r.patient for r in index.records[:12]}
    check_no_leak(manifest, {"P008", "nobody"})  # not a source: passes
    with pytest.raises(ConfigError) as err:
        check_no_leak(manifest, {next(iter(sources))})
    assert str(manifest) in str(err.value) and "leakage" in str(err.value)
    # the generator's own training patients count too, even when no slice was drawn from them
    (out / PATIENTS).write_text(json.dumps({"generator": ["P007"], "conditioning": []}))
    with pytest.raises(ConfigError, match="generator trained on 1 held-out"):
        check_no_leak(manifest, {"P007"})


def test_cli_trains_on_the_training_fold_only(mat_dataset: Path, tmp_path: Path) -> None:
    from tumorscope.config import load_config
    from tumorscope.data.prepare import prepare_split

    config = write_config(tmp_path, mat_dataset)
    out = tmp_path / "synthetic"
    assert main(["synthesize", "--config", str(config), "--train-steps", "2", "--size", "32",
                 "--n", "6", "--width", "8", "--batch-size", "2", "--out", str(out)]) == 0
    _, split = prepare_split(load_config(config))
    held_out = {r.patient for r in split.val + split.test}
    trained = set(json.loads((out / "generator" / PATIENTS).read_text())["patients"])
    assert trained == {r.patient for r in split.train} and not trained & held_out
    with (out / "manifest.csv").open() as f:
        assert {row["source_patient"] for row in csv.DictReader(f)} <= trained
    assert (out / "generator" / GENERATOR).is_file()
    assert main(["synthesize", "--config", str(config), "--out", str(out), "--resume"]) == 2
    # the output is a dataset a classifier config can name
    from tumorscope.data.slices import SliceDataset

    _, synthetic = prepare_split(load_config(config, ["data.dataset=synthetic",
                                                      f"data.root={out}"]))
    assert synthetic.train and all(r.patient.startswith("synthetic-") for r in synthetic.train)
    item = SliceDataset(synthetic.train, 1, 64, "instance")[0]
    assert item["image"].shape == (1, 64, 64) and item["mask"].shape == (1, 64, 64)


@pytest.mark.parametrize(("argv", "message"), [
    (["--size", "40"], "--size: 40 px"),
    (["--n", "0"], "--n: 0 is not a positive number"),
])
def test_cli_bad_input_is_one_line(argv: list[str], message: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synthesize", "--config", "x.yaml", "--out", str(tmp_path / "o"), *argv]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tumorscope synthesize: error: ")
    assert message in lines[0]


def test_frechet_distance_is_zero_for_the_same_set_and_grows_with_a_shift() -> None:
    features = np.random.default_rng(0).normal(size=(400, 8))
    assert frechet_distance(features, features) == pytest.approx(0, abs=1e-6)
    near, far = (frechet_distance(features, features + shift) for shift in (0.5, 2.0))
    assert near == pytest.approx(8 * 0.25, rel=1e-3) and far == pytest.approx(8 * 4, rel=1e-3)
    wider = frechet_distance(features, features * 2)
    assert wider > near
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(features, features[:, :4])


def test_image_features_run_any_pooling_callable() -> None:
    conv = torch.nn.Conv2d(1, 6, 3)
    images = np.random.default_rng(0).random((5, 1, 16, 16)).astype(np.float32)
    features = image_features(images, lambda x: conv(x).mean(dim=(2, 3)), batch_size=2)
    assert features.shape == (5, 6)
    assert frechet_distance(features, features) == pytest.approx(0, abs=1e-6)
