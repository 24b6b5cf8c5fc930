"""Slice packs: ``tumorscope pack`` holds the training and validation slices at the model's
input size (never the held-out fold's pixels), and ``data.pack`` trains the same run with the
dataset gone; a pack made for other settings is refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from fixtures import cli, make_figshare_mat_dataset, write_config

if TYPE_CHECKING:
    from tumorscope.config import JointExperiment

pytestmark = pytest.mark.slow


def _config(path: Path, *overrides: str) -> JointExperiment:
    from tumorscope.config import JointExperiment, load_config, require_task

    return require_task(load_config(path, list(overrides)), JointExperiment)


def test_pack_matches_the_dataset_and_leaves_out_the_test_fold(tmp_path: Path) -> None:
    from tumorscope.data.pack import read_pack
    from tumorscope.data.prepare import prepare_split
    from tumorscope.data.slices import SliceDataset
    from tumorscope.errors import ScanReadError

    data = make_figshare_mat_dataset(tmp_path / "data", patients=9, slices=3)
    config = write_config(tmp_path, data)
    done = cli("pack", "--config", str(config), "--out", str(tmp_path / "pack"), "--parts", "2",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "held-out slices listed, not packed" in done.stdout
    manifest = json.loads((tmp_path / "pack" / "pack.json").read_text())
    assert [p["file"] for p in manifest["parts"]] == ["images-000.npy.xz", "images-001.npy.xz"]

    cfg = _config(config)
    _, raw = prepare_split(cfg)
    pack = read_pack(_config(config, f"data.pack={tmp_path / 'pack'}"))
    for role in ("train", "val", "test"):
        assert [r.id for r in getattr(pack.split, role)] == [r.id for r in getattr(raw, role)]
        assert ({r.patient for r in getattr(pack.split, role)}
                == {r.patient for r in getattr(raw, role)})
    assert not {r.patient for r in pack.split.test} & {r.patient for r in pack.split.train}
    reader = SliceDataset([*raw.train, *raw.val], 1, 64, "global")
    for i, record in enumerate([*pack.split.train, *pack.split.val]):
        image, mask = pack.item(record)
        want_image, want_mask = reader.resized(i)
        assert image.shape == want_image.shape == (1, 64, 64)
        np.testing.assert_allclose(image.astype(np.float32), want_image.astype(np.float32),
                                   atol=1 / 510 + 1e-3)
        np.testing.assert_array_equal(mask, want_mask)
    assert pack.images.shape[0] == len(raw.train) + len(raw.val)
    with pytest.raises(ScanReadError, match="not in this pack"):
        pack.item(raw.test[0])


def test_train_from_a_pack_with_the_dataset_gone(tmp_path: Path) -> None:
    data = make_figshare_mat_dataset(tmp_path / "data", patients=9, slices=3)
    config = write_config(tmp_path, data, epochs=1)
    pack = tmp_path / "pack"
    assert cli("pack", "--config", str(config), "--out", str(pack), cwd=tmp_path).returncode == 0
    shutil.move(data, tmp_path / "elsewhere")

    done = cli("train", "--config", str(config), f"data.pack={pack}", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    card = json.loads((tmp_path / "runs" / "tiny" / "model" / "model.json").read_text())
    split = card["data"]["split"]
    assert (split["train"]["slices"], split["val"]["slices"], split["test"]["slices"]) == (
        9, 9, 9)
    assert card["training_config"]["data"]["pack"] == str(pack)

    other = cli("train", "--config", str(config), f"data.pack={pack}", "model.input_size=32",
                "output.run_name=other", cwd=tmp_path)
    assert other.returncode == 2
    assert other.stderr.strip().count("\n") == 0 and "data.pack" in other.stderr
    assert "input_size 64 there, 32 here" in other.stderr

    again = cli("pack", "--config", str(config), "--out", str(pack), cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.parametrize("text", ["[]", "{\"format\": 1}", "not json"])
def test_a_broken_manifest_is_named(tmp_path: Path, text: str) -> None:
    from tumorscope.data.pack import read_pack
    from tumorscope.errors import ScanReadError

    (tmp_path / "pack").mkdir()
    (tmp_path / "pack" / "pack.json").write_text(text)
    config = write_config(tmp_path, tmp_path / "data")
    with pytest.raises(ScanReadError, match=r"pack\.json"):
        read_pack(_config(config, f"data.pack={tmp_path / 'pack'}"))


def test_damaged_pixels_and_unsafe_uses_are_refused(tmp_path: Path) -> None:
    from tumorscope.data.pack import MASKS, read_pack, write_pack
    from tumorscope.data.prepare import prepare_split
    from tumorscope.errors import ConfigError, ScanReadError

    data = make_figshare_mat_dataset(tmp_path / "data", patients=6, slices=2)
    config = write_config(tmp_path, data)
    cfg = _config(config)
    pack = write_pack(cfg, *prepare_split(cfg), tmp_path / "pack")
    packed = f"data.pack={pack}"
    # computed folds depend on the patients split: a subset cannot borrow them
    with pytest.raises(ConfigError, match="splits its patients differently"):
        read_pack(_config(config, packed, "data.sources=[figshare-mat]"))
    # a pack from before framing existed squashed its slices: named, to be packed again
    manifest = json.loads((pack / "pack.json").read_text())
    assert manifest["settings"]["framing"] == "square around the head"
    del manifest["settings"]["framing"]
    (pack / "pack.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="framing 'stretch' there, 'square around the head'"):
        read_pack(_config(config, packed))
    manifest["settings"]["framing"] = "square around the head"
    (pack / "pack.json").write_text(json.dumps(manifest))
    # pixels of another shape are named, not used
    import io
    import lzma

    buffer = io.BytesIO()
    np.save(buffer, np.zeros((3, 7, 7), np.uint8))
    (pack / MASKS).write_bytes(lzma.compress(buffer.getvalue()))
    with pytest.raises(ScanReadError, match=r"masks\.npy\.xz"):
        read_pack(_config(config, packed))
    # cross-validation and a second pack in the same place are refused in one line
    cv = cli("cv", "--config", str(config), "--folds", "3", packed, cwd=tmp_path)
    assert cv.returncode == 2 and "data.pack" in cv.stderr
    with pytest.raises(ConfigError, match="already exists"):
        write_pack(cfg, *prepare_split(cfg), pack)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_pack_refuses_what_a_pack_cannot_serve(tmp_path: Path) -> None:
    configs = Path(__file__).resolve().parents[1] / "configs"
    done = cli("pack", "--config", str(configs / "brats" / "segresnet-3d.yaml"), "--out",
               str(tmp_path / "pack"), cwd=tmp_path)
    assert done.returncode == 2 and "packs hold 2D slices" in done.stderr
    assert done.stderr.strip().count("\n") == 0 and not (tmp_path / "pack").exists()
