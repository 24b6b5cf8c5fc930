"""`tumorscope embed`: pooled features of every kind of model, t-SNE coordinates, and the CLI
on a tiny generated dataset with an untrained joint model whose card holds its config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tumorscope.cli import main
from tumorscope.errors import ConfigError
from tumorscope.models.features import pooled_features

pytestmark = pytest.mark.usefixtures("one_thread")


def _smp_joint() -> nn.Module:
    """A small smp UNet with a classification head (the uncalibrated joint model)."""
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    return smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, in_channels=1,
                    decoder_channels=(32, 16, 8), classes=1, aux_params={"classes": 3}).eval()


class _WithMethod(nn.Module):
    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) * 2


class _WithPooled(nn.Module):
    def pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x.amax(dim=(2, 3))


def test_a_pooled_features_method_comes_first() -> None:
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(pooled_features(_WithMethod(), x), x.mean(dim=(2, 3)) * 2)
    torch.testing.assert_close(pooled_features(_WithPooled(), x), x.amax(dim=(2, 3)))


def test_the_capsule_network_gives_its_front_end_features() -> None:
    from tumorscope.models.capsule import capsule_from_config

    model = capsule_from_config({"input_size": 64, "channels": [8, 16, 32], "primary_caps": 8},
                                num_classes=2).eval()
    with torch.inference_mode():
        assert pooled_features(model, torch.rand(2, 1, 64, 64)).shape == (2, 32)


def test_smp_encoder_and_calibrated_joint_model_agree() -> None:
    from tumorscope.models.joint import JointWithDistance

    net = _smp_joint()
    x = torch.rand(2, 1, 32, 32)
    with torch.inference_mode():
        plain = pooled_features(net, x)
        wrapped = pooled_features(JointWithDistance(net, 3).eval(), x)
    assert plain.shape == (2, net.encoder.out_channels[-1])
    torch.testing.assert_close(plain, wrapped)


@pytest.mark.parametrize("model", [nn.Linear(4, 2), nn.Module()])
def test_a_model_without_features_is_a_one_line_error(model: nn.Module) -> None:
    with pytest.raises(ConfigError, match="no pooled features") as err:
        pooled_features(model, torch.rand(1, 4))
    assert "\n" not in str(err.value)


def test_plain_unet_encoder_is_not_taken_for_an_smp_one() -> None:
    from tumorscope.models.plain_unet import PlainUNet

    with pytest.raises(ConfigError, match="PlainUNet"):
        pooled_features(PlainUNet(1, 3), torch.rand(1, 1, 32, 32))


def test_tsne_gives_two_finite_coordinates_per_row() -> None:
    from tumorscope.evaluation.embed import tsne

    features = np.random.default_rng(0).normal(size=(12, 8)).astype(np.float32)
    coords = tsne(features, seed=1)
    assert coords.shape == (12, 2) and np.isfinite(coords).all()
    np.testing.assert_allclose(tsne(features, seed=1), coords)  # seeded
    with pytest.raises(ConfigError, match="at least 2"):
        tsne(features[:1])


@pytest.fixture(scope="module")
def tiny_model(mat_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained joint model (resnet18 UNet, 64 px) whose card holds the tiny config and
    its split of ``mat_dataset`` (3 folds of 3 patients x 4 slices)."""
    from fixtures import save_carded_model

    return save_carded_model(tmp_path_factory.mktemp("embed_model"), mat_dataset)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["embed", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_embed_test_fold_writes_csv_and_png(tiny_model: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--checkpoint", str(tiny_model), "--out", str(tmp_path))
    assert code == 0, err
    table = pd.read_csv(tmp_path / "embedding.csv")
    assert list(table.columns) == ["id", "patient", "fold", "part", "class", "x", "y"]
    assert len(table) == 12 and set(table["part"]) == {"test"} and set(table["fold"]) == {0}
    assert set(table["class"]) == {"meningioma", "glioma", "pituitary"}
    assert np.isfinite(table[["x", "y"]].to_numpy()).all()
    assert (tmp_path / "tsne.png").read_bytes()[:4] == b"\x89PNG"
    assert "12 slices" in out and "by part" in out


def test_embed_all_folds_limited_and_fold_override(tiny_model: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--checkpoint", str(tiny_model), "--out", str(tmp_path / "a"),
                          "--part", "all", "--limit", "20", "--seed", "3")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "a" / "embedding.csv")
    assert len(table) == 20 and set(table["fold"]) == {0, 1, 2} and "by fold" in out
    assert set(table["part"]) == {"train", "val", "test"}
    code, _, err = _run(capsys, "--checkpoint", str(tiny_model), "--out", str(tmp_path / "f"),
                        "--fold", "2", "--part", "test", "val")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "f" / "embedding.csv")
    assert len(table) == 24
    # fold 2 is picked as "test", but the part says what the model did with it: trained on it
    assert set(table.loc[table["part"] == "train", "fold"]) == {2}
    assert set(table.loc[table["part"] == "val", "fold"]) == {1}
    assert "test" not in set(table["part"])


@pytest.mark.parametrize("args", [["--fold", "3"], ["--limit", "0"]])
def test_bad_options_are_one_line(tiny_model: Path, tmp_path: Path, args: list[str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "--checkpoint", str(tiny_model), "--out", str(tmp_path), *args)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert not (tmp_path / "embedding.csv").exists()


def test_bad_checkpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path))
    assert code == 2 and len(err.splitlines()) == 1 and "not found" in err


def test_a_3d_model_is_refused_in_one_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from fixtures import save_random_brats_model

    model = save_random_brats_model(tmp_path / "brats")
    code, _, err = _run(capsys, "--checkpoint", str(model), "--out", str(tmp_path / "o"))
    assert code == 2 and len(err.splitlines()) == 1 and "2D slice models" in err
