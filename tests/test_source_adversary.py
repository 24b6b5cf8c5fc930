"""The dataset adversary (``loss.source_adversary``, tasks/adversary.py): the gradient
reversal, its schedule, the class conditioning, the encoder tap and the dataset indices. The
training run with it is in test_no_tumour.py (it needs the generated mixed collection)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch


def test_reversal_flips_and_scales_the_gradient_only() -> None:
    from tumorscope.tasks.adversary import reverse_gradient

    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = reverse_gradient(x, 0.25)
    assert torch.equal(y, x.detach())
    (y * torch.tensor([1.0, 2.0, 4.0])).sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad, torch.tensor([-0.25, -0.5, -1.0]))


def test_the_reversal_ramps_from_nothing_to_full() -> None:
    from tumorscope.tasks.adversary import ramp

    values = [ramp(p / 10) for p in range(11)]
    assert values[0] == 0.0 and 0.99 < values[-1] <= 1.0
    assert all(a < b for a, b in itertools.pairwise(values))
    assert ramp(-1.0) == 0.0 and ramp(2.0) == values[-1]  # clamped outside training


def test_the_adversary_hears_the_class_and_trains_its_head_not_the_features() -> None:
    from tumorscope.tasks.adversary import SourceAdversary

    torch.manual_seed(0)
    adversary = SourceAdversary(dim=8, classes=4, sources=3)
    features = torch.randn(2, 8, 5, 5, requires_grad=True)
    same = features.detach()[:1].expand(2, -1, -1, -1).clone().requires_grad_(True)
    logits = adversary(same, torch.tensor([0, 3]), 1.0)
    assert logits.shape == (2, 3)
    assert not torch.allclose(logits[0], logits[1])  # one image, two classes: two guesses
    # the head descends the dataset loss, the features ascend it
    logits = adversary(features, torch.tensor([1, 1]), 1.0)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2]))
    loss.backward()
    with torch.no_grad():
        step = 1e-2
        for p in adversary.parameters():
            assert p.grad is not None
            p -= step * p.grad
        assert features.grad is not None
        moved = features - step * features.grad  # what the encoder's step does to them
        after = torch.nn.functional.cross_entropy(adversary(moved, torch.tensor([1, 1]), 1.0),
                                                  torch.tensor([0, 2]))
        head_only = torch.nn.functional.cross_entropy(
            adversary(features, torch.tensor([1, 1]), 1.0), torch.tensor([0, 2]))
    assert head_only < loss and after > head_only


def test_the_tap_keeps_the_deepest_encoder_features() -> None:
    from tumorscope.models import build_joint
    from tumorscope.tasks.adversary import FeatureTap

    net = build_joint("unet", "resnet18", 4, attention="none")
    tap = FeatureTap()
    with pytest.raises(RuntimeError, match="not run"):
        tap.deepest()
    net.encoder.register_forward_hook(tap)
    net.eval()
    with torch.no_grad():
        net(torch.rand(2, 1, 64, 64))
    assert tap.deepest().shape == (2, net.encoder.out_channels[-1], 2, 2)
    with pytest.raises(RuntimeError, match="not run"):  # read once: the graph is let go
        tap.deepest()


def test_each_slice_knows_its_dataset_and_a_stranger_is_blamed_on_the_setting() -> None:
    from tumorscope.data.records import Record
    from tumorscope.data.slices import dataset_indices
    from tumorscope.errors import ConfigError

    records = [Record(f"{s}/1", Path("x.png"), None, 0, "p", source=s)
               for s in ("brats", "figshare", "brats")]
    mirrored = Record("figshare-mirror/1", Path("x.png"), None, 3, "p",
                      source="figshare-mirror", synthesis="mirror")
    setting = "loss.source_adversary.sources"
    assert dataset_indices([*records, mirrored], ["figshare", "brats"], setting) == [1, 0, 1, 0]
    assert dataset_indices(records, None, setting) == [0, 0, 0]
    with pytest.raises(ConfigError, match=r"^loss\.source_adversary\.sources: .*brats"):
        dataset_indices(records, ["figshare", "lgg"], setting)
    plain = Record("1", Path("x.png"), None, 0, "p")  # a single dataset names none
    with pytest.raises(ConfigError, match=r"^loss\.source_adversary\.sources: .*mixed collection"):
        dataset_indices([plain], ["figshare", "lgg"], setting)


def test_the_adversary_config_needs_two_datasets_and_a_weight() -> None:
    from pydantic import ValidationError

    from tumorscope.config import JointLossConfig

    loss = JointLossConfig.model_validate(
        {"source_adversary": {"weight": 0.5, "sources": ["figshare", "brats"]}})
    assert loss.source_adversary is not None and loss.source_adversary.weight == 0.5
    assert JointLossConfig().source_adversary is None
    for bad in ({"weight": 0.5, "sources": ["lgg"]}, {"weight": 0.5, "sources": ["lgg", "lgg"]},
                {"weight": 0.0, "sources": ["lgg", "brats"]}):
        with pytest.raises(ValidationError):
            JointLossConfig.model_validate({"source_adversary": bad})
