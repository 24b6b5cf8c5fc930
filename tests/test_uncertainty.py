"""Calibration, operating point and out-of-distribution pieces: uncertainty.py, the feature
distance of the joint network, the input checks and the MRI artefact augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tumorscope.errors import ConfigError
from tumorscope.uncertainty import (
    auroc,
    false_alarm_threshold,
    fit_temperature,
    nll,
    operating_point,
    quantiles,
    reliability,
    softmax,
    typicality,
    youden_threshold,
)


def _overconfident(n: int = 4000, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is calibrated at temperature 3, scaled by 3 (overconfident)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, k))
    probs = softmax(logits)
    labels = np.array([rng.choice(k, p=p) for p in probs])
    return logits * 3, labels


def test_temperature_scaling_finds_the_overconfidence_and_lowers_ece() -> None:
    logits, labels = _overconfident()
    t = fit_temperature(logits, labels)
    assert 2.5 < t < 3.5
    before, after = reliability(softmax(logits), labels), reliability(softmax(logits, t), labels)
    assert after["ece"] < before["ece"] / 2
    assert nll(logits, labels, t) < nll(logits, labels)
    assert sum(b["count"] for b in after["bins"]) == len(labels)


def test_ece_is_zero_for_a_perfectly_calibrated_constant_and_large_for_a_wrong_one() -> None:
    labels = np.array([0] * 80 + [1] * 20)
    probs = np.tile([0.8, 0.2], (100, 1))
    assert reliability(probs, labels)["ece"] == pytest.approx(0.0, abs=1e-9)
    wrong = np.tile([0.99, 0.01], (100, 1))
    assert reliability(wrong, labels)["ece"] == pytest.approx(0.19, abs=1e-6)
    empty = reliability(probs, labels)["bins"][0]
    assert empty["count"] == 0 and empty["accuracy"] is None


def test_youden_threshold_and_operating_point() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.35, 0.6, 0.7, 0.8, 0.9])
    positive = np.array([0, 0, 0, 0, 1, 1, 1, 1], bool)
    t = youden_threshold(scores, positive)
    assert 0.35 < t <= 0.6
    op = operating_point(scores, positive, t)
    assert op == {"sensitivity": 1.0, "specificity": 1.0, "false_alarm_rate": 0.0}
    assert auroc(scores, positive) == 1.0
    assert np.isnan(auroc(scores, np.ones(8, bool)))
    assert auroc(-scores, positive) == 0.0


def test_false_alarm_budget_catches_the_most_within_it() -> None:
    # 10 tumour-free slices, 10 tumours; overlapping scores
    free = np.array([0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.62, 0.75])
    tumour = np.array([0.3, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.85, 0.9])
    scores, positive = np.r_[free, tumour], np.r_[np.zeros(10, bool), np.ones(10, bool)]
    for budget, caught, alarms in ((0.0, 0.3, 0.0), (0.1, 0.5, 0.1), (0.2, 0.9, 0.2),
                                   (0.35, 0.9, 0.3), (0.5, 1.0, 0.5)):
        t = false_alarm_threshold(scores, positive, budget)
        op = operating_point(scores, positive, t)
        assert op["false_alarm_rate"] == pytest.approx(alarms) and op["false_alarm_rate"] <= budget
        assert op["sensitivity"] == pytest.approx(caught)
    # Youden's point on the same scores is a different trade-off
    youden = operating_point(scores, positive, youden_threshold(scores, positive))
    assert youden["false_alarm_rate"] == pytest.approx(0.2)


def test_typicality_decreases_with_distance() -> None:
    ref = quantiles(np.arange(101.0))
    values = typicality(np.array([-5.0, 0.0, 50.0, 100.0, 1e6]), ref)
    assert values[0] == 1.0 and values[-1] == 0.0
    assert values[2] == pytest.approx(0.5)
    assert np.all(np.diff(values) <= 0)


def test_feature_distance_is_zero_at_a_class_mean_and_grows_away() -> None:
    from tumorscope.models.joint import FeatureDistance

    dist = FeatureDistance(2, 3)
    dist.means.copy_(torch.tensor([[0.0, 0, 0], [5.0, 5, 5]]))
    d = dist(torch.tensor([[0.0, 0, 0], [5.0, 5, 5], [1.0, 0, 0], [10.0, 10, 10]]))
    assert d[0] == 0 and d[1] == 0 and d[2] == pytest.approx(1.0)
    assert d[3] == pytest.approx(75.0)


def test_distance_wrapper_keeps_the_joint_outputs_and_weight_names() -> None:
    from tumorscope.models.joint import JointWithDistance, build_joint

    torch.manual_seed(0)
    net = build_joint("unet", "resnet18", 4).eval()
    wrapped = JointWithDistance(net, 4).eval()
    assert set(net.state_dict()) == set(wrapped.state_dict()) - {
        "ood.stages.0.means", "ood.stages.0.precision", "ood.centre", "ood.scale"}
    x = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        masks, labels = net(x)
        masks2, labels2, distance = wrapped(x)
    assert torch.equal(masks, masks2) and torch.equal(labels, labels2)
    assert distance.shape == (2,)


def test_stage_distance_sums_the_standardised_distances_of_each_stage() -> None:
    from tumorscope.models.joint import StageDistance

    dist = StageDistance(1, [2, 3])
    dist.stages[1].means.copy_(torch.ones(1, 3))
    dist.centre.copy_(torch.tensor([1.0, 2.0]))
    dist.scale.copy_(torch.tensor([2.0, 4.0]))
    features = [torch.tensor([[3.0, 0.0], [0.0, 0.0]]), torch.tensor([[1.0, 1, 1], [3.0, 1, 1]])]
    assert dist.per_stage(features).tolist() == [[9.0, 0.0], [0.0, 4.0]]
    # (9 - 1) / 2 + (0 - 2) / 4 and (0 - 1) / 2 + (4 - 2) / 4
    assert dist(features).tolist() == pytest.approx([3.5, 0.0])


def test_a_reference_calibrated_before_stages_loads_as_the_deepest_stage() -> None:
    from tumorscope.models.joint import JointWithDistance, build_joint

    torch.manual_seed(0)
    net = build_joint("unet", "resnet18", 4).eval()
    old = {k: v for k, v in net.state_dict().items()}
    old["ood.means"] = torch.randn(4, 512)
    old["ood.precision"] = torch.eye(512) * 2
    wrapped = JointWithDistance(net, 4).eval()
    wrapped.load_state_dict(old)  # strict: every key is accounted for
    x = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        _, _, distance = wrapped(x)
        pooled = wrapped.pooled(x)[2]
    diff = pooled[:, None, :] - old["ood.means"][None]
    expected = (2 * diff.pow(2).sum(-1)).min(dim=1).values
    assert torch.allclose(distance, expected, rtol=1e-4)


def test_distance_stages_are_named_by_the_card() -> None:
    from tumorscope.models.joint import JointWithDistance, joint_from_config

    cfg = {"arch": "unet", "encoder": "resnet18", "in_channels": 1, "encoder_weights": None,
           "ood_features": True, "ood_stages": [-2, -1]}
    net = joint_from_config(cfg, 4)
    assert isinstance(net, JointWithDistance) and net.ood_stages == (-2, -1)
    assert [s.means.shape[1] for s in net.ood.stages] == [256, 512]
    with torch.inference_mode():
        _, _, distance = net.eval()(torch.randn(2, 1, 64, 64))
    assert distance.shape == (2,)
    with pytest.raises(ConfigError, match=r"model\.ood_stages"):
        joint_from_config({**cfg, "ood_stages": [-9]}, 4)


def test_a_wrapped_attention_unet_still_drops_old_unused_attention_weights() -> None:
    from tumorscope.models.joint import JointWithDistance, build_joint

    net = build_joint("unet", "resnet18", 4, attention="scse")
    old = dict(net.state_dict())
    old["decoder.blocks.4.attention1.attention.cSE.1.weight"] = torch.zeros(1)  # saved before
    wrapped = JointWithDistance(build_joint("unet", "resnet18", 4, attention="scse"), 4)
    state = {**old, "ood.stages.0.means": torch.zeros(4, 512),
             "ood.stages.0.precision": torch.eye(512), "ood.centre": torch.zeros(1),
             "ood.scale": torch.ones(1)}
    wrapped.load_state_dict(state)  # strict
    net.load_state_dict(old)


def _mri_like(size: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    head = ((yy - size / 2) / 0.45) ** 2 + ((xx - size / 2) / 0.38) ** 2 < (size / 2) ** 2
    return (head * rng.uniform(300, 900, (size, size)))[None].astype(np.float32)


def test_input_checks() -> None:
    from PIL import Image, ImageDraw

    from tumorscope.inference.input_checks import unlike_mri

    rng = np.random.default_rng(1)
    assert unlike_mri(_mri_like()) == []
    assert unlike_mri(np.repeat(_mri_like(), 3, axis=0)) == []  # gray stored as RGB
    page = Image.new("L", (128, 128), 255)
    ImageDraw.Draw(page).text((5, 5), "Patient report, page 1", fill=0)
    assert any("bright background" in r for r in unlike_mri(np.asarray(page)[None]))
    colour = np.stack([rng.uniform(180, 255, (64, 64)), rng.uniform(0, 60, (64, 64)),
                       rng.uniform(60, 120, (64, 64))])
    assert any("colour" in r for r in unlike_mri(colour))
    texture = rng.uniform(60, 200, (1, 64, 64))
    assert unlike_mri(texture) != []
    blank = np.zeros((1, 64, 64))
    blank[0, 30, 30] = 1
    assert any("blank" in r for r in unlike_mri(blank))


def test_mri_artefact_augmentation_is_seeded_and_stays_in_range() -> None:
    from tumorscope.config import Augment2DConfig
    from tumorscope.transforms.augment import build_augment

    cfg = Augment2DConfig(bias_field=1, ghosting=1, motion=1, spike=1, blur=1, noise=1,
                          downscale=1, jpeg=1, gamma=1)
    augment = build_augment(cfg)
    assert augment is not None
    image = (_mri_like(64)[0] / 900)[..., None]
    mask = np.zeros((64, 64), np.uint8)
    augment.set_random_seed(7)
    a = augment(image=image, mask=mask)["image"]
    augment.set_random_seed(7)
    b = augment(image=image, mask=mask)["image"]
    augment.set_random_seed(8)
    c = augment(image=image, mask=mask)["image"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == (64, 64, 1) and a.min() >= 0 and a.max() <= 1
    assert np.abs(a - image).mean() > 0.01  # the artefacts change the image
    assert build_augment(Augment2DConfig(enabled=False)) is None


def test_intensity_remap_keeps_background_and_range_and_can_invert_contrast() -> None:
    from tumorscope.config import Augment2DConfig
    from tumorscope.transforms.augment import build_augment, intensity_remap

    ramp = np.linspace(0, 1, 101, dtype=np.float32)[None, :, None]
    curves = [intensity_remap(ramp, np.random.default_rng(s))[0, :, 0] for s in range(40)]
    assert all(c[0] == 0 and c.min() >= 0 and np.isclose(c.max(), 1) for c in curves)
    # some curves invert the contrast of the upper range (dark becomes bright), some keep it
    slopes = [c[-1] - c[50] for c in curves]
    assert min(slopes) < -0.2 and max(slopes) > 0.2
    only = build_augment(Augment2DConfig(hflip=0, rotate=0, scale=0, shift=0,
                                         brightness_contrast=0, intensity_remap=1))
    assert only is not None
    image = np.tile(ramp, (1, 1, 1)).reshape(1, 101, 1).repeat(8, 0)
    only.set_random_seed(3)
    a = only(image=image, mask=np.zeros(image.shape[:2], np.uint8))["image"]
    only.set_random_seed(3)
    b = only(image=image, mask=np.zeros(image.shape[:2], np.uint8))["image"]
    assert np.array_equal(a, b) and not np.allclose(a, image) and a[0, 0, 0] == 0


def test_zoom_out_shrinks_the_head_and_its_mask_together() -> None:
    from tumorscope.config import Augment2DConfig
    from tumorscope.transforms.augment import ZOOM_OUT, build_augment

    only = build_augment(Augment2DConfig(hflip=0, rotate=0, scale=0, shift=0,
                                         brightness_contrast=0, zoom_out=1))
    assert only is not None
    yy, xx = np.mgrid[:96, :96]
    head = (((yy - 48) ** 2 + (xx - 48) ** 2) < 40 ** 2).astype(np.float32)[..., None]
    mask = (((yy - 48) ** 2 + (xx - 60) ** 2) < 10 ** 2).astype(np.uint8)
    for seed in range(5):
        only.set_random_seed(seed)
        out = only(image=head, mask=mask)
        ratio = np.sqrt(out["image"].sum() / head.sum())
        assert ZOOM_OUT[0] - 0.03 <= ratio <= ZOOM_OUT[1] + 0.03
        assert abs(np.sqrt(out["mask"].sum() / mask.sum()) - ratio) < 0.1
        assert out["image"][0, 0, 0] == 0  # the border added is background


def test_bootstrap_leaves_out_resamples_where_auroc_is_undefined() -> None:
    from tumorscope.metrics import bootstrap_ci

    # two patients hold all the negatives: many patient resamples have positives only
    patients = np.array([f"p{i}" for i in range(10) for _ in range(4)])
    positive = np.array([i >= 2 for i in range(10) for _ in range(4)], float)
    scores = positive * 0.6 + np.linspace(0, 0.3, 40)
    low, high = bootstrap_ci(np.stack([scores, positive], 1),
                             lambda r: auroc(r[:, 0], r[:, 1] > 0.5), 200, groups=patients)
    assert np.isfinite(low) and np.isfinite(high) and 0.5 < low <= high <= 1.0
