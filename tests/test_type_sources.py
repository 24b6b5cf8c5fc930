"""``loss.type_sources``: tumour slices of the named datasets teach the tumour type; the
others teach only "a tumour" (tasks/joint.py, data/slices.py), so a dataset's sequences or
look cannot come to stand for the type its tumours happen to share."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

CLASSES = ["meningioma", "glioma", "pituitary", "no tumour"]


def _task(type_sources: list[str] | None, classes: list[str] = CLASSES,  # type: ignore[no-untyped-def]
          smoothing: float = 0.0):
    from tumorscope.config import JointExperiment
    from tumorscope.tasks.joint import JointTask

    cfg = JointExperiment.model_validate({
        "model": {"encoder": "resnet18", "encoder_weights": None, "input_size": 64},
        "ema": {"enabled": False},
        "loss": {"type_sources": type_sources, "label_smoothing": smoothing}})
    return JointTask(cfg.model_dump(mode="json"), classes, load_pretrained=False)


def test_an_open_type_scores_the_tumour_classes_together() -> None:
    task = _task(["figshare"])
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.0, 3.0, 0.0, 1.0], [0.1, 0.2, 0.3, 2.0]],
                          requires_grad=True)
    labels = torch.tensor([1, 1, 3])  # glioma, glioma, no tumour
    typed = torch.tensor([False, True, False])
    loss = task._class_loss(logits, labels, typed)
    log_p = logits.log_softmax(1)
    expected = (-log_p[0, :3].logsumexp(0) - log_p[1, 1] - log_p[2, 3]) / 3
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # the open-type glioma pushes no tumour class above another: equal gradient on all three
    # relative to their probabilities, none toward "glioma" in particular
    loss.backward()
    assert logits.grad is not None
    grad = logits.grad[0]
    p = logits.softmax(1)[0].detach()
    ratios = grad[:3] / p[:3]
    assert torch.allclose(ratios, ratios[0].expand(3), rtol=1e-5)
    assert grad[3] > 0  # and away from "no tumour"
    # moving probability among the tumour classes leaves its loss unchanged
    swapped = logits.detach()[:1, [1, 0, 2, 3]]
    assert task._class_loss(swapped, labels[:1], typed[:1]).item() == pytest.approx(
        task._class_loss(logits.detach()[:1], labels[:1], typed[:1]).item(), rel=1e-6)


def test_every_slice_typed_is_plain_cross_entropy() -> None:
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 1])
    plain = torch.nn.functional.cross_entropy(logits, labels)
    assert _task(["figshare"])._class_loss(logits, labels, torch.ones(5, dtype=torch.bool)) \
        .item() == pytest.approx(plain.item())
    # off: the flags are ignored, an untyped glioma still teaches "glioma"
    assert _task(None)._class_loss(logits, labels, torch.zeros(5, dtype=torch.bool)) \
        .item() == pytest.approx(plain.item())
    # ... which is not what the open type does
    open_type = _task(["figshare"])._class_loss(logits, labels, torch.zeros(5, dtype=torch.bool))
    assert open_type.item() < plain.item()


def test_it_needs_a_no_tumour_class() -> None:
    from tumorscope.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^loss\.type_sources: needs a 'no tumour' class"):
        _task(["figshare"], ["meningioma", "glioma", "pituitary"])
    _task(None, ["meningioma", "glioma", "pituitary"])  # off: any classes
    # the names inference and calibration take for "no tumour" (an image-folder collection's)
    assert _task(["figshare"], ["glioma", "meningioma", "notumor", "pituitary"]).no_tumour == 2


def test_slices_know_whether_they_teach_the_type_and_a_typo_is_blamed() -> None:
    from tumorscope.data.records import Record
    from tumorscope.data.slices import check_type_sources, typed_flags
    from tumorscope.errors import ConfigError

    records = [Record(f"{s}/1", Path("x.png"), None, 1, "p", source=s)
               for s in ("figshare", "lgg", "brats")]
    mirrored = Record("figshare-mirror/1", Path("x.png"), None, 3, "p",
                      source="figshare-mirror", synthesis="mirror")
    assert typed_flags([*records, mirrored], ["figshare"]) == [True, False, False, True]
    assert typed_flags(records, None) == [True, True, True]
    check_type_sources(records, ["figshare", "brats"])
    check_type_sources(records, None)
    with pytest.raises(ConfigError, match=r"^loss\.type_sources: \['figshar'\] are not datasets"):
        check_type_sources(records, ["figshar"])
    plain = Record("1", Path("x.png"), None, 0, "p")
    with pytest.raises(ConfigError, match="carry no dataset name: it needs a mixed collection"):
        check_type_sources([plain], ["figshare"])


def test_the_setting_names_distinct_datasets() -> None:
    from pydantic import ValidationError

    from tumorscope.config import JointLossConfig

    assert JointLossConfig.model_validate({"type_sources": ["figshare"]}).type_sources == [
        "figshare"]
    assert JointLossConfig().type_sources is None
    for bad in ([], ["lgg", "lgg"]):
        with pytest.raises(ValidationError):
            JointLossConfig.model_validate({"type_sources": bad})


def test_an_open_type_is_smoothed_like_cross_entropy() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.5, -4.0], [0.0, 3.0, 0.0, 1.0]])
    labels, typed = torch.tensor([1, 3]), torch.tensor([False, False])
    task = _task(["figshare"], smoothing=0.1)
    log_p = logits.log_softmax(1)
    open_type = 0.9 * -log_p[0, :3].logsumexp(0) + 0.1 * -log_p[0].mean()
    exact = torch.nn.functional.cross_entropy(logits[1:], labels[1:], label_smoothing=0.1)
    assert task._class_loss(logits, labels, typed).item() == pytest.approx(
        ((open_type + exact) / 2).item(), rel=1e-6)
    # smoothing bounds it: "no tumour" driven to nothing no longer lowers the loss for ever
    lower = logits.clone()
    lower[0, 3] = -40.0
    assert task._class_loss(lower[:1], labels[:1], typed[:1]) > task._class_loss(
        logits[:1], labels[:1], typed[:1])


def test_validation_counts_any_tumour_class_right_for_an_open_type() -> None:
    task = _task(["figshare"]).eval()
    task.log = lambda *a, **k: None  # type: ignore[method-assign]
    task.on_validation_epoch_start()
    labels = torch.tensor([1, 1, 1, 0])  # gliomas of LGG (open, open, open), a figshare one
    typed = torch.tensor([False, False, False, True])
    # the model says: meningioma, no tumour, glioma, pituitary
    logits = torch.tensor([[5.0, 0, 0, 0], [0, 0, 0, 5.0], [0, 5.0, 0, 0], [0, 0, 5.0, 0]])
    masks = torch.zeros(4, 1, 64, 64)
    task.eval_model = lambda: (lambda x: (torch.zeros(4, 1, 64, 64), logits))  # type: ignore[method-assign]
    with torch.no_grad():
        task.validation_step({"image": torch.zeros(4, 1, 64, 64), "mask": masks,
                              "label": labels, "typed": typed}, 0)
    cm = task._cm
    assert cm[1, 1] == 2 and cm[1, 3] == 1  # open gliomas: "meningioma" right, "no tumour" not
    assert cm[0, 2] == 1  # a typed slice keeps its exact type
