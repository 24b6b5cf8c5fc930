"""The classify task: stages (frozen body, progressive resizing, per-stage learning-rate
restarts), discriminative layer groups, encoder weights and warm starts, the capsule net as
a classifier, and classifier inference (JSON only, no mask)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from fixtures import (
    make_figshare_mat_dataset,
    module_scratch,
    save_random_classifier,
    save_random_model,
)
from tumorscope.cli import main
from tumorscope.config import ClassifyExperiment, ExperimentConfig, load_config
from tumorscope.errors import CheckpointError, ConfigError
from tumorscope.models.classifier import TimmClassifier, classifier_from_config, split_evenly
from tumorscope.tasks.optim import configure_optimisation, layer_groups, lr_mult
from tumorscope.tasks.stages import (
    Stage,
    frozen_epochs,
    input_sizes,
    is_final,
    plan,
    stage_at,
    staged_lr_factor,
)
from tumorscope.training import ckpt_io

LR, MULT, GROUPS = 1e-3, 0.01, 3
BODY_GROUPS = [f"encoder.{i}" for i in range(GROUPS)]
TWO_STAGES = ("stages=[{epochs: 1, input_size: 32, freeze_body: true}, "
              "{epochs: 1, input_size: 64}]")


def _write_config(tmp: Path, data: Path) -> Path:
    """A three-stage transfer-learning config at a tiny scale: frozen at 32 px, then
    48 px and 64 px with per-layer-group learning rates."""
    text = f"""name: tinycls
task: classify
seed: 3
data: {{dataset: figshare-mat, root: {data}, folds: 3, test_fold: 0, val_fold: 1,
        fold_source: computed}}
model: {{arch: timm, name: resnet18, encoder_weights: none, input_size: 64, in_channels: 1}}
optim: {{lr: {LR}, encoder_lr_mult: {MULT}, layer_groups: {GROUPS}}}
stages:
  - {{epochs: 1, input_size: 32, freeze_body: true}}
  - {{epochs: 1, input_size: 48}}
  - {{epochs: 1, input_size: 64}}
trainer: {{batch_size: 4, accelerator: cpu, checkpoint_every_n_steps: 2, log_every_n_steps: 1}}
output: {{root: {tmp / 'runs'}}}
"""
    path = tmp / "tinycls.yaml"
    path.write_text(text)
    return path


def _classify(cfg: ExperimentConfig) -> ClassifyExperiment:
    assert isinstance(cfg, ClassifyExperiment)
    return cfg


class _Recorder(L.Callback):
    """What the model saw in each epoch: input sizes (training and validation), the
    optimiser's learning rate per group at the epoch's first step, and the parameters of
    every group at the start of training and at the end of each epoch (-1: at the start)."""

    def __init__(self) -> None:
        self.sizes: dict[int, set[int]] = {}
        self.val_sizes: dict[int, set[int]] = {}
        self.lrs: dict[int, dict[str, float]] = {}
        self.params: dict[int, dict[str, list[torch.Tensor]]] = {}

    @staticmethod
    def _snapshot(trainer: L.Trainer) -> dict[str, list[torch.Tensor]]:
        return {g["name"]: [p.detach().clone() for p in g["params"]]
                for g in trainer.optimizers[0].param_groups}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.params[-1] = self._snapshot(trainer)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        epoch = trainer.current_epoch
        self.sizes.setdefault(epoch, set()).add(int(batch["image"].shape[-1]))
        self.lrs.setdefault(epoch, {g["name"]: float(g["lr"])
                                    for g in trainer.optimizers[0].param_groups})

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                  batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.val_sizes.setdefault(trainer.current_epoch, set()).add(int(batch["image"].shape[-1]))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.params[trainer.current_epoch] = self._snapshot(trainer)


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _stage_lrs() -> dict[str, float]:
    """Unfrozen: geometric from lr * encoder_lr_mult at the stem to lr at the head."""
    return {**{f"encoder.{i}": LR * MULT ** (1 - i / GROUPS) for i in range(GROUPS)},
            "head": LR}


class _Interrupt(Exception):
    pass


class _StopAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise _Interrupt


@pytest.fixture(scope="module")
def staged_run(tmp_path_factory: pytest.TempPathFactory, mat_dataset: Path
               ) -> Iterator[tuple[Path, ClassifyExperiment, _Recorder]]:
    """The three-stage run, uninterrupted, with what it saw recorded."""
    from tumorscope.training.run import train

    with module_scratch(tmp_path_factory, "classify") as tmp:
        path = _write_config(tmp, mat_dataset)
        cfg = _classify(load_config(path))
        recorder = _Recorder()
        train(cfg, callbacks=[recorder])
        yield path, cfg, recorder


# ---------------------------------------------------------------- stages and learning rates

def test_three_stage_plan(tmp_path: Path) -> None:
    cfg = _classify(load_config(_write_config(tmp_path, tmp_path / "data"),
                                ["trainer.epochs=10"]))
    assert cfg.trainer.epochs == 3  # the stages' sum, whatever trainer.epochs says
    stages = plan(cfg)
    assert stages == [Stage(0, 1, 32, True), Stage(1, 1, 48, False), Stage(2, 1, 64, False)]
    assert input_sizes(cfg) == {0: 32, 1: 48, 2: 64}
    assert frozen_epochs(cfg) == {0}
    assert [is_final(cfg, e) for e in range(3)] == [False, False, True]
    assert stage_at(stages, 1) == stages[1] and stage_at(stages, 7) == stages[-1]


def test_no_stages_is_one_stage_after_the_frozen_epochs(tmp_path: Path) -> None:
    cfg = _classify(load_config(_write_config(tmp_path, tmp_path / "data"),
                                ["stages=[]", "trainer.epochs=5",
                                 "optim.freeze_encoder_epochs=2"]))
    assert plan(cfg) == [Stage(0, 2, None, True), Stage(2, 3, None, False)]
    assert frozen_epochs(cfg) == {0, 1} and input_sizes(cfg) == {}
    assert all(is_final(cfg, e) for e in range(5))


def test_staged_lr_factor_restarts_with_warm_up_and_cosine_per_stage(tmp_path: Path) -> None:
    cfg = load_config(_write_config(tmp_path, tmp_path / "data"), [
        "stages=[{epochs: 2, input_size: 32, freeze_body: true}, "
        "{epochs: 3, input_size: 64, lr_mult: 0.5}]",
        "scheduler.warmup_epochs=1", "scheduler.min_lr=0"])
    head, body = staged_lr_factor(cfg, body=False), staged_lr_factor(cfg, body=True)
    # stage 1: warm-up 1/2, then the cosine's start; stage 2 restarts at lr_mult 0.5
    assert [head(e) for e in range(5)] == pytest.approx([0.5, 1.0, 0.25, 0.5, 0.25])
    assert [body(e) for e in range(5)] == pytest.approx([0.0, 0.0, 0.25, 0.5, 0.25])


def test_layer_group_learning_rates_are_geometric(tmp_path: Path) -> None:
    cfg = load_config(_write_config(tmp_path, tmp_path / "data"))
    mults = [lr_mult(cfg, name, GROUPS) for name in [*BODY_GROUPS, "head"]]
    assert mults[0] == pytest.approx(MULT) and mults[-1] == 1.0
    ratios = np.array(mults[1:]) / np.array(mults[:-1])
    assert ratios == pytest.approx(np.full(GROUPS, MULT ** (-1 / GROUPS)))
    assert lr_mult(cfg, "encoder", 1) == MULT
    model = TimmClassifier("resnet18", 3, 1, 0.0)
    opt = configure_optimisation(cfg, layer_groups(model.body_groups(GROUPS),
                                                   model.head_parameters()))["optimizer"]
    # a staged run starts in its first stage: the frozen body at 0, the head at lr
    assert {g["name"]: g["lr"] for g in opt.param_groups} == pytest.approx(
        {**dict.fromkeys(BODY_GROUPS, 0.0), "head": LR})


@pytest.mark.slow
def test_stages_set_sizes_learning_rates_and_freeze_the_body(
        staged_run: tuple[Path, ClassifyExperiment, _Recorder]) -> None:
    from tumorscope.training.history import read_run_metrics

    _, cfg, seen = staged_run
    assert seen.sizes == {0: {32}, 1: {48}, 2: {64}}
    assert seen.val_sizes == {0: {32}, 1: {48}, 2: {64}}

    logged = read_run_metrics(cfg.run_dir)
    lr_rows = logged[logged["lr-AdamW/head"].notna()].sort_values("step")
    per_epoch = [{name: float(row[f"lr-AdamW/{name}"]) for name in [*BODY_GROUPS, "head"]}
                 for _, row in lr_rows.iterrows()]
    frozen = {**dict.fromkeys(BODY_GROUPS, 0.0), "head": LR}
    # each stage restarts: epoch 2 is back at the full rates, not further down a cosine
    assert per_epoch == [pytest.approx(frozen), pytest.approx(_stage_lrs()),
                         pytest.approx(_stage_lrs())]
    assert [seen.lrs[e] for e in range(3)] == per_epoch  # what the optimiser actually used

    start, after = seen.params[-1], seen.params
    for name in BODY_GROUPS:
        assert _same(start[name], after[0][name]), f"{name} moved while frozen"
        assert not _same(after[0][name], after[1][name]), f"{name} did not move in stage 2"
    assert not _same(start["head"], after[0]["head"])

    # val/score is macro-F1 minus 1 below the exported size, so epoch 2 is the one selected
    val = logged[logged["val/score"].notna()].set_index("epoch")
    offsets = (val["val/macro_f1"] - val["val/score"]).round(6).to_dict()
    assert offsets == {0: 1.0, 1: 1.0, 2: 0.0}
    card = json.loads((cfg.run_dir / "model" / "model.json").read_text())
    assert card["task"] == "classify" and card["selected_epoch"] == 2
    assert card["preprocessing"]["input_size"] == 64


@pytest.mark.slow
def test_plateau_schedule_with_workers_still_freezes_and_resizes(tmp_path: Path,
                                                                 mat_dataset: Path) -> None:
    from tumorscope.training.run import train

    cfg = load_config(_write_config(tmp_path, mat_dataset),
                      [TWO_STAGES, "scheduler.name=plateau", "data.num_workers=1"])
    seen = _Recorder()
    train(cfg, callbacks=[seen])
    assert seen.sizes == {0: {32}, 1: {64}}  # worker processes see the new sizes too
    assert seen.val_sizes == {0: {32}, 1: {64}}
    assert all(seen.lrs[0][name] > 0 for name in BODY_GROUPS)  # plateau cannot zero them
    for name in BODY_GROUPS:
        assert _same(seen.params[-1][name], seen.params[0][name]), f"{name} moved while frozen"
        assert not _same(seen.params[0][name], seen.params[1][name])


@pytest.mark.slow
def test_a_run_resumed_in_stage_two_continues_at_its_size_and_rates(
        staged_run: tuple[Path, ClassifyExperiment, _Recorder]) -> None:
    from tumorscope.training.run import train

    path, straight, _ = staged_run
    cfg = load_config(path, ["output.run_name=resumed", "data.num_workers=1"])
    with pytest.raises(_Interrupt):  # in the middle of epoch 1 (3 steps an epoch)
        train(cfg, callbacks=[_StopAt(4)])
    step = ckpt_io.load_training_checkpoint(cfg.run_dir / "checkpoints" / "step.ckpt")
    assert step["global_step"] == 4 and step["epoch"] == 1
    seen = _Recorder()
    train(cfg, resume=True, callbacks=[seen])
    assert seen.sizes == {1: {48}, 2: {64}}
    assert seen.val_sizes == {1: {48}, 2: {64}}
    assert seen.lrs[1] == pytest.approx(_stage_lrs()) and seen.lrs[2] == pytest.approx(
        _stage_lrs())
    a = ckpt_io.load_training_checkpoint(straight.run_dir / "checkpoints" / "last.ckpt")
    b = ckpt_io.load_training_checkpoint(cfg.run_dir / "checkpoints" / "last.ckpt")
    sa, sb = a["state_dict"], b["state_dict"]
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, different[:5]  # the interrupted run ends where the straight one did


# ---------------------------------------------------------------------------- layer groups

def _covered_once(model: nn.Module, groups: list[list[nn.Parameter]]) -> None:
    seen = [id(p) for group in groups for p in group]
    assert len(seen) == len(set(seen)), "a parameter is in two groups"
    assert set(seen) == {id(p) for p in model.parameters()}, "a parameter is in no group"


@pytest.mark.parametrize("n", [1, 2, 3, 4, 50])
def test_resnet_layer_groups_cover_every_parameter_once(n: int) -> None:
    model = TimmClassifier("resnet18", 3, 1, 0.0)
    body = model.body_groups(n)
    _covered_once(model, [*body, model.head_parameters()])
    deepest = len(model.body_groups(1000))
    assert deepest >= 4 and len(body) == min(n, deepest)
    assert all(body)
    names = {id(p): k for k, p in model.named_parameters()}
    assert names[id(body[0][0])] == "model.conv1.weight"  # stem first
    assert all(names[id(p)].startswith("model.layer4") for p in body[-1][-2:])
    assert {names[id(p)] for p in model.head_parameters()} == {"model.fc.weight",
                                                               "model.fc.bias"}


@pytest.mark.parametrize("reconstruction", [False, True])
def test_capsule_layer_groups_cover_every_parameter_once(reconstruction: bool) -> None:
    from tumorscope.models.capsule import CapsuleNet

    model = CapsuleNet(3, input_size=64, channels=(4, 4, 8, 8), primary_caps=4,
                       reconstruction=reconstruction, reconstruction_size=16)
    for n in (1, 2, 3, 100):
        body = model.body_groups(n)
        assert len(body) == min(n, len(model.encoder) + 1)
        _covered_once(model, [*body, model.head_parameters()])
    head = {id(p) for p in model.head_parameters()}
    assert {id(p) for p in model.classcaps.parameters()} <= head
    assert ({id(p) for p in model.decoder.parameters()} <= head) if model.decoder else True


def test_split_evenly() -> None:
    p = [nn.Parameter(torch.zeros(1)) for _ in range(6)]
    groups = [[p[0]], [p[1], p[2]], [], [p[3]], [p[4]], [p[5]]]

    def ids(split: list[list[nn.Parameter]]) -> list[list[int]]:  # by identity, not value
        return [[id(x) for x in g] for g in split]

    flat = [id(x) for x in p]
    assert ids(split_evenly(groups, 1)) == [flat]
    assert ids(split_evenly(groups, 0)) == [flat]  # at least one group
    assert ids(split_evenly(groups, 5)) == ids([[p[0]], [p[1], p[2]], [p[3]], [p[4]], [p[5]]])
    assert ids(split_evenly(groups, 9)) == ids(split_evenly(groups, 5))  # empty ones dropped
    for n in (2, 3, 4):  # contiguous runs in order, of near-equal numbers of groups
        split = ids(split_evenly([[x] for x in p], n))
        assert len(split) == n and [i for g in split for i in g] == flat
        assert max(map(len, split)) - min(map(len, split)) <= 1
    assert ids(split_evenly([[], []], 3)) == [[]]  # nothing to split: one empty group


# --------------------------------------------------------------------------------- weights

def test_lite0_package_weights_load_into_the_classifier() -> None:
    from tumorscope.models.pretrained import LITE0_PACKAGE, lite0_package_path, read_state_dict

    package = [v for k, v in read_state_dict(lite0_package_path()).items()
               if not k.endswith("num_batches_tracked")]
    model = classifier_from_config({"arch": "timm", "name": "tf_efficientnet_lite0",
                                    "encoder_weights": LITE0_PACKAGE, "in_channels": 1,
                                    "dropout": 0.0}, 3)
    assert isinstance(model, TimmClassifier)
    net: Any = model.model
    stem = package[0]
    assert stem.shape == (32, 3, 3, 3)
    torch.testing.assert_close(net.conv_stem.weight, stem.sum(dim=1, keepdim=True))
    head_conv = next(v for v in package if v.shape == net.conv_head.weight.shape)
    torch.testing.assert_close(net.conv_head.weight, head_conv)
    assert net.classifier.weight.shape == (3, 1280)  # a head of its own class count


def test_lite0_package_fits_only_its_model() -> None:
    with pytest.raises(ConfigError) as err:
        classifier_from_config({"name": "resnet18", "encoder_weights":
                                "efficientnet-lite0-package"}, 3)
    assert "tf_efficientnet_lite0" in str(err.value) and "\n" not in str(err.value)


def test_imagenet_weights_offline_fail_at_once_with_the_options(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # nothing cached
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(CheckpointError) as err:
        classifier_from_config({"name": "resnet18", "encoder_weights": "imagenet"}, 3)
    text = str(err.value)
    assert "\n" not in text
    assert "efficientnet-lite0-package" in text and "encoder_weights=/path" in text
    assert "none" in text


def test_a_local_weights_file_loads_with_the_stem_fitted(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = timm.create_model("resnet18", pretrained=False).state_dict()  # RGB, 1000 classes
    save_file(source, str(tmp_path / "resnet18.safetensors"))
    model = classifier_from_config({"name": "resnet18", "in_channels": 1,
                                    "encoder_weights": str(tmp_path / "resnet18.safetensors")}, 3)
    net: Any = model
    torch.testing.assert_close(net.model.conv1.weight,
                               source["conv1.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(net.model.layer4[1].conv2.weight, source["layer4.1.conv2.weight"])
    assert net.model.fc.weight.shape == (3, 512)

    other = {f"x{k}": v for k, v in source.items()}  # not a resnet18's names
    save_file(other, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="match"):
        classifier_from_config({"name": "resnet18", "in_channels": 1,
                                "encoder_weights": str(tmp_path / "other.safetensors")}, 3)


# ---------------------------------------------------------------------- warm start (init)

def _classify_dict(**model: Any) -> dict[str, Any]:
    tree = {"task": "classify", "ema": {"enabled": True},
            "model": {"arch": "timm", "name": "resnet18", "encoder_weights": "none",
                      "input_size": 64, **model}}
    return ClassifyExperiment.model_validate(tree).model_dump(mode="json")


def test_init_weights_warm_starts_a_model_with_more_classes(tmp_path: Path) -> None:
    from tumorscope.models.pretrained import load_matching, read_state_dict
    from tumorscope.tasks.classify import ClassifyTask

    saved = save_random_classifier(tmp_path / "three", ("a", "b", "c"))
    weights = read_state_dict(saved / "model.safetensors")
    config = {**_classify_dict(), "init_weights": str(saved)}
    task = ClassifyTask(config, ["a", "b", "c", "d"])
    own = task.model.state_dict()
    body = [k for k in own if not k.startswith("model.fc.")]
    assert body and all(torch.equal(own[k], weights[k]) for k in body)
    assert own["model.fc.weight"].shape == (4, 512)  # the head: fresh, of 4 classes
    ema = task.ema.module.state_dict()  # the average starts from the warm weights
    assert all(torch.equal(ema[k], weights[k]) for k in body)
    assert load_matching(TimmClassifier("resnet18", 4, 1, 0.0), saved)[1] == [
        "model.fc.bias", "model.fc.weight"]

    resumed = ClassifyTask(config, ["a", "b", "c", "d"], load_pretrained=False)
    assert not torch.equal(resumed.model.state_dict()["model.conv1.weight"],
                           weights["model.conv1.weight"])  # a resume keeps its checkpoint's


def test_init_weights_of_another_architecture_is_a_one_line_error(tmp_path: Path) -> None:
    from tumorscope.tasks.classify import ClassifyTask

    joint = save_random_model(tmp_path / "joint")
    with pytest.raises(CheckpointError) as err:
        ClassifyTask({**_classify_dict(), "init_weights": str(joint)}, ["a", "b", "c"])
    assert "match" in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------- capsule network

def _capsule_task(reconstruction: bool, weight: float = 0.0005) -> Any:
    from tumorscope.tasks.classify import ClassifyTask

    config = _classify_dict(arch="capsule", reconstruction=reconstruction, dropout=0.0)
    config["loss"]["reconstruction_weight"] = weight
    torch.manual_seed(0)
    return ClassifyTask(config, ["a", "b", "c"])


def test_capsule_reconstruction_adds_its_term_to_the_margin_loss() -> None:
    from tumorscope.models.capsule import reconstruction_loss

    plain, decoded = _capsule_task(False), _capsule_task(True)
    shared = plain.model.state_dict()
    assert all(torch.equal(v, decoded.model.state_dict()[k]) for k, v in shared.items())
    torch.manual_seed(1)
    images, labels = torch.rand(2, 1, 64, 64), torch.tensor([0, 2])
    margin, _ = plain._loss(plain.model, images, labels)
    total, _ = decoded._loss(decoded.model, images, labels)
    _, capsules = decoded.model.logits_and_capsules(images)
    term = 0.0005 * reconstruction_loss(decoded.model.reconstruct(capsules, labels), images)
    assert term > 0
    torch.testing.assert_close(total, margin + term)
    unweighted = _capsule_task(True, weight=0.0)
    torch.testing.assert_close(unweighted._loss(unweighted.model, images, labels)[0], margin)


@pytest.mark.slow
@pytest.mark.parametrize(("front", "card_says"), [
    ("convs", "its own conv front end"),
    ("tf_efficientnet_lite0", "front end `tf_efficientnet_lite0` cut at stride 16"),
])
def test_capsule_classifier_trains_and_predicts(tmp_path: Path, mat_dataset: Path, front: str,
                                                card_says: str) -> None:
    from tumorscope.inference.predictor import Predictor
    from tumorscope.training.run import train

    cfg = load_config(_write_config(tmp_path, mat_dataset), [
        "stages=[]", "trainer.epochs=1", "model.arch=capsule", "model.reconstruction=true",
        "optim.layer_groups=2", f"model.front_end={front}"])
    out = train(cfg)
    card = json.loads((out / "model.json").read_text())
    assert card["model"]["arch"] == "capsule" and card["model"]["reconstruction"] is True
    assert card["model"]["front_end"] == front
    from tumorscope.evaluation.classifier_card import _architecture

    assert card_says in _architecture(card["model"], None)  # the model card's line
    pred = Predictor.from_checkpoint(out, backend="torch").predict_file(mat_dataset / "1.mat")
    assert sum(pred.probabilities.values()) == pytest.approx(1, abs=1e-5)
    assert pred.extra["segmentation"] is False


# ------------------------------------------------------------------------------ inference

@pytest.mark.slow
def test_classifier_predict_writes_json_only_and_evaluate_has_no_segmentation(
        staged_run: tuple[Path, ClassifyExperiment, _Recorder], mat_dataset: Path,
        tmp_path: Path) -> None:
    _, cfg, _ = staged_run
    model = cfg.run_dir / "model"
    out = tmp_path / "pred"
    assert main(["predict", str(mat_dataset / "1.mat"), "--checkpoint", str(model),
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["1.json"]
    record = json.loads((out / "1.json").read_text())
    assert record["segmentation"] is False and record["outputs"] == {}
    assert not {"tumour_area_pixels", "tumour_area_mm2", "bounding_box",
                "mask_shape"} & set(record)
    assert record["assumes_tumour"] is True  # three tumour types, no "no tumour" class
    assert "assumes a tumour is present" in record["message"]

    ev = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(model), "--data-root", str(mat_dataset),
                 "--out", str(ev)]) == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["segmentation"] is None
    assert set(metrics["confidence_intervals_95"]) == {"accuracy", "macro_f1"}
    assert metrics["fold_role"] == "test" and len(metrics["per_image"]) == 12


def test_class_rule_cools_overconfident_logits_and_sets_the_no_tumour_point() -> None:
    from tumorscope.evaluation.calibrate import fit_class_rule

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    wrong = rng.random(600) < 0.3  # 70% right, every answer at p ~ 1: overconfident
    predicted = np.where(wrong, (labels + 1) % 3, labels)
    logits = 12.0 * np.eye(3)[predicted] + rng.normal(0, 0.5, (600, 3))
    fields, found = fit_class_rule(logits, labels, ["glioma", "meningioma", "pituitary"])
    assert found is None and fields["no_tumour_class"] is None
    assert fields["temperature"] > 2 and fields["ece_after"] < fields["ece_before"] / 2
    assert fields["nll_after"] < fields["nll_before"]
    fields, found = fit_class_rule(logits[:, :2], (labels > 0).astype(int),
                                   ["no tumour", "tumour"])
    assert fields["no_tumour_class"] == "no tumour" and 0 < fields["tumour_threshold"] < 1
    assert found is not None and found.shape == (600,) and found.dtype == bool
    assert 0 <= fields["detection_validation"]["auroc"] <= 1


@pytest.mark.slow
def test_calibrate_a_classifier_keeps_its_weights_and_scales_its_probabilities(
        staged_run: tuple[Path, ClassifyExperiment, _Recorder], mat_dataset: Path,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tumorscope.checkpoint.store import load_checkpoint
    from tumorscope.inference.predictor import Predictor

    _, cfg, _ = staged_run
    model, out = cfg.run_dir / "model", tmp_path / "calibrated"
    assert main(["calibrate", "--checkpoint", str(model), "--data-root", str(mat_dataset),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "temperature" in printed and "out-of-distribution" not in printed
    (net0, _), (net1, card) = load_checkpoint(model), load_checkpoint(out)
    cal = card.calibration
    assert cal is not None and cal.ood_threshold is None and cal.mask_threshold is None
    assert abs(cal.temperature - 1) > 1e-3  # else the probability check below is vacuous
    assert cal.fitted_on.startswith(f"validation fold {cfg.data.val_fold}")
    assert (out / "calibration.png").stat().st_size > 1000
    for (name, a), b in zip(net0.state_dict().items(), net1.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    raw, scaled = (Predictor.from_checkpoint(m, backend="torch").predict_file(
        mat_dataset / "1.mat").probabilities for m in (model, out))
    logit = np.log([raw[c] for c in card.classes])  # softmax(z / T) = normalised p ** (1/T)
    expected = np.exp(logit / cal.temperature) / np.exp(logit / cal.temperature).sum()
    np.testing.assert_allclose([scaled[c] for c in card.classes], expected, atol=1e-4)
    ev = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(out), "--data-root", str(mat_dataset),
                 "--out", str(ev)]) == 0
    trust = json.loads((ev / "metrics.json").read_text())["trust"]
    assert trust["temperature"] == pytest.approx(cal.temperature)
    assert main(["card", "--checkpoint", str(out), "--metrics", str(ev / "metrics.json"),
                 "--out", str(tmp_path / "card.md")]) == 0
    assert f"Temperature {cal.temperature:.3f}" in (tmp_path / "card.md").read_text()


@pytest.mark.parametrize("calibrated", [True, False])
@pytest.mark.parametrize(("bias", "message"), [((4.0, -4.0), "No tumour found."),
                                                ((-4.0, 4.0), "Tumour found: tumour")])
def test_a_no_tumour_classifier_says_what_it_decided(
        tmp_path: Path, calibrated: bool, bias: tuple[float, float], message: str) -> None:
    from tumorscope.checkpoint.card import Calibration
    from tumorscope.checkpoint.store import load_checkpoint, save_checkpoint
    from tumorscope.inference.predictor import Predictor

    folder = save_random_classifier(tmp_path / "model", ("no tumour", "tumour"))
    net, card = load_checkpoint(folder)
    state = net.state_dict()
    state["model.fc.weight"].zero_()
    state["model.fc.bias"].copy_(torch.tensor(bias))
    if calibrated:
        card = card.model_copy(update={"calibration": Calibration(
            fitted_on="validation", no_tumour_class="no tumour", tumour_threshold=0.5)})
    save_checkpoint(folder, state, card.model_dump(mode="json", exclude_none=True))
    data = make_figshare_mat_dataset(tmp_path / "data", patients=1, slices=1)
    pred = Predictor.from_checkpoint(folder, backend="torch").predict_file(data / "1.mat")
    record = pred.record()
    assert record["message"].startswith(message)
    assert record["tumour_found"] is (message != "No tumour found.")
    assert record["class"] == ("no tumour" if message == "No tumour found." else "tumour")
    assert "assumes_tumour" not in record and record["segmentation"] is False
    assert "bounding_box" not in record


# ------------------------------------------------------------------------ config checks

def test_last_stage_at_another_size_is_a_one_line_cli_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_config(tmp_path, tmp_path / "data")
    path.write_text(path.read_text().replace("{epochs: 1, input_size: 64}",
                                             "{epochs: 1, input_size: 96}"))
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "input_size" in err and "96" in err
    assert not (tmp_path / "runs").exists()


def test_warm_start_from_a_model_that_saw_the_test_patients_is_refused(
        tmp_path: Path, mat_dataset: Path) -> None:
    from fixtures import save_carded_model, write_config
    from tumorscope.config import load_config
    from tumorscope.data.prepare import prepare_split
    from tumorscope.errors import ConfigError
    from tumorscope.training.run import check_warm_start

    source = save_carded_model(tmp_path / "source", mat_dataset)  # tests fold 0, trains on 2
    for test_fold, val_fold, refused in ((0, 1, False), (2, 0, True)):
        cfg = load_config(write_config(tmp_path, mat_dataset),
                          [f"init_weights={source}", f"data.test_fold={test_fold}",
                           f"data.val_fold={val_fold}"])
        split = prepare_split(cfg)[1]
        if refused:
            with pytest.raises(ConfigError, match="trained or selected on 3 patient"):
                check_warm_start(cfg, split)
        else:
            check_warm_start(cfg, split)


def test_a_stage_without_a_size_trains_at_the_exported_size() -> None:
    from tumorscope.config import ClassifyExperiment
    from tumorscope.tasks.stages import first_final_epoch, input_sizes

    cfg = ClassifyExperiment.model_validate({"model": {"input_size": 128}, "stages": [
        {"epochs": 2, "input_size": 64}, {"epochs": 2}]})
    assert input_sizes(cfg) == {0: 64, 1: 64, 2: 128, 3: 128}
    assert first_final_epoch(cfg) == 2
    with pytest.raises(ValueError, match="freeze_body"):
        ClassifyExperiment.model_validate({"optim": {"freeze_encoder_epochs": 1},
                                           "stages": [{"epochs": 1}]})
