"""The seams new tasks and datasets plug into: the dataset and task registries, typed cards,
named runner outputs, MONAI slice/window inferers, shared metric code, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures import save_random_model
from tumorscope.checkpoint.store import load_checkpoint, read_card
from tumorscope.config import load_config, task_names
from tumorscope.data import dataset_names, load_index, register_dataset
from tumorscope.data.records import DatasetIndex, Record
from tumorscope.errors import CheckpointError, ConfigError, TumorscopeError
from tumorscope.inference.inferers import over_slices, over_windows
from tumorscope.inference.runtime import TorchRunner
from tumorscope.tasks import get_task
from tumorscope.transforms.slice2d import normalise

REPO = Path(__file__).resolve().parents[1]


def test_a_registered_dataset_is_indexed_by_name(tmp_path: Path) -> None:
    name = "toy-registry-test"
    if name not in dataset_names():
        @register_dataset(name)
        def _toy(root: Path) -> DatasetIndex:
            records = [Record(f"s{i}", root / f"{i}.png", None, i % 2, f"p{i}") for i in range(4)]
            return DatasetIndex(name, root, ["no", "yes"], records)
    index = load_index(name, tmp_path)
    assert index.name == name and [r.patient for r in index.records] == ["p0", "p1", "p2", "p3"]
    with pytest.raises(ConfigError, match=r"data\.dataset: unknown dataset 'nope'.*figshare"):
        load_index("nope", tmp_path)


def test_config_schema_follows_the_task(tmp_path: Path) -> None:
    from tumorscope.tasks import task_names as registered_tasks

    assert "joint" in task_names() and task_names() == registered_tasks()  # one schema each
    (tmp_path / "c.yaml").write_text("task: segment-everything\n")
    with pytest.raises(ConfigError, match=r"task: unknown task 'segment-everything'.*joint"):
        load_config(tmp_path / "c.yaml")
    cfg = load_config(None, ["trainer.precision=32", "model.input_size=96"])
    assert cfg.trainer.precision == "32" and cfg.model.input_size == 96  # type: ignore[attr-defined]


def test_unknown_task_in_a_card_is_one_line(tmp_path: Path) -> None:
    model = save_random_model(tmp_path / "m")
    card = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**card, "task": "nope"}))
    with pytest.raises(TumorscopeError, match=r"model\.json: task: unknown task 'nope'"):
        load_checkpoint(model)
    (model / "model.json").write_text(json.dumps({**card, "model": {**card["model"],
                                                                     "arch": "transformer"}}))
    with pytest.raises(CheckpointError, match=r"model section.*unknown architecture"):
        load_checkpoint(model)
    (model / "model.json").write_text(json.dumps({**card, "model": {"encoder": "resnet18"}}))
    with pytest.raises(CheckpointError, match=r"cannot build a joint network \(KeyError"):
        load_checkpoint(model)


def test_cards_written_before_the_typed_card_still_load() -> None:
    card = read_card(REPO / "models" / "figshare")
    assert card.task == "joint" and card.id.startswith("figshare-joint-lite0-")
    assert card.data.split.train is not None and card.data.split.train.patients == 142
    assert card.experiment().name == card.name  # its training config validates today


def test_a_card_without_a_test_fold_is_not_evaluated_on_fold_0(tmp_path: Path) -> None:
    from tumorscope.evaluation.evaluate import fold_role

    card = read_card(save_random_model(tmp_path / "m"))
    assert fold_role(card, 0) == "test"  # the fixture's card says fold 0 is held out
    bare = card.model_copy(update={"data": card.data.model_copy(
        update={"split": card.data.split.model_copy(update={"test_fold": None})})})
    assert fold_role(bare, 0) == "train"  # unknown: refused unless --allow-train-fold


def test_bad_preprocessing_in_a_card_is_one_line(tmp_path: Path) -> None:
    from tumorscope.inference.predictor import Predictor

    model = save_random_model(tmp_path / "m")
    card = json.loads((model / "model.json").read_text())
    card["preprocessing"]["input_size"] = "big"
    (model / "model.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"preprocessing\.input_size: .*integer"):
        Predictor.from_checkpoint(model, backend="torch")


def test_unknown_normalisation_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown normalisation 'zscore'"):
        normalise(np.zeros((1, 4, 4), np.float32), "zscore")
    with pytest.raises(ConfigError, match="needs the training set's"):
        normalise(np.zeros((1, 4, 4), np.float32), "global", None)


def test_runner_outputs_are_named_by_the_task(tmp_path: Path) -> None:
    model, card = load_checkpoint(save_random_model(tmp_path / "m", input_size=64))
    runner = TorchRunner(model, get_task(card.task).outputs)
    out = runner(np.zeros((2, 1, 64, 64), np.float32))
    assert out["mask_logits"].shape == (2, 1, 64, 64) and out["class_logits"].shape == (2, 3)
    with pytest.raises(CheckpointError, match="returned 2 outputs"):
        TorchRunner(model, ("only",))(np.zeros((1, 1, 64, 64), np.float32))


def test_over_slices_matches_a_loop_over_slices() -> None:
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(2, 7, 5, 6)).astype(np.float32)

    def fn(batch: np.ndarray) -> dict[str, np.ndarray]:  # per-slice, non-linear, batch-aware
        assert batch.shape[1:] == (2, 7, 5) and len(batch) <= 4
        mean = batch.mean(axis=(1, 2, 3), keepdims=True)
        return {"a": np.tanh(batch[:, :1] - mean),  # a map per slice
                "b": np.concatenate([mean, -mean, 2 * mean], axis=1)}  # 3 values per slice

    out = over_slices(volume, fn, batch_size=4)
    assert out["a"].shape == (1, 7, 5, 6) and out["b"].shape == (3, 1, 1, 6)
    for k in range(6):
        ref = fn(volume[None, ..., k])
        np.testing.assert_allclose(out["a"][..., k], ref["a"][0], atol=1e-6)
        np.testing.assert_allclose(out["b"][..., k], ref["b"][0], atol=1e-6)


def test_over_windows_stitches_overlapping_windows() -> None:
    volume = np.random.default_rng(1).normal(size=(1, 12, 10, 9)).astype(np.float32)
    out = over_windows(volume, lambda b: {"x": 2 * b}, roi=(8, 8, 8), overlap=0.5)
    np.testing.assert_allclose(out["x"], 2 * volume, atol=1e-5)  # blending keeps a linear map


def test_validation_metrics_use_the_evaluation_code() -> None:
    from tumorscope.config import JointExperiment
    from tumorscope.metrics import classification_metrics, confusion_matrix, per_image_dice
    from tumorscope.tasks.joint import JointTask

    cfg = JointExperiment.model_validate({"model": {"encoder": "resnet18",
                                                    "encoder_weights": None, "input_size": 64},
                                          "ema": {"enabled": False}})
    task = JointTask(cfg.model_dump(mode="json"), ["a", "b", "c"], load_pretrained=False).eval()
    logged: dict[str, float] = {}
    task.log = lambda *a, **k: None  # type: ignore[method-assign]
    task.log_dict = lambda d, **k: logged.update(d)  # type: ignore[method-assign]

    class _Strategy:
        @staticmethod
        def reduce(t: torch.Tensor, reduce_op: str) -> torch.Tensor:
            return t

    task.trainer = type("T", (), {"strategy": _Strategy()})()  # type: ignore[assignment]
    torch.manual_seed(0)
    mask = (torch.rand(6, 1, 64, 64) > 0.7).float()
    mask[0] = 0
    batch = {"image": torch.randn(6, 1, 64, 64), "mask": mask,
             "label": torch.tensor([0, 1, 2, 0, 1, 2])}
    task.on_validation_epoch_start()
    with torch.no_grad():
        task.validation_step(batch, 0)
        mask_logits, class_logits = task.model(batch["image"])
    task.on_validation_epoch_end()
    pred = class_logits.argmax(1).numpy()
    cm = confusion_matrix(batch["label"].numpy(), pred, 3)
    expected = classification_metrics(cm, ["a", "b", "c"])
    dice = per_image_dice((mask_logits > 0).numpy()[1:, 0], mask.numpy()[1:, 0] > 0.5)
    assert logged["val/acc"] == pytest.approx(expected["accuracy"])
    assert logged["val/macro_f1"] == pytest.approx(expected["macro_f1"])
    assert logged["val/dice"] == pytest.approx(dice.mean())


def test_a_module_left_in_eval_mode_is_named_when_training_starts(
        caplog: pytest.LogCaptureFixture) -> None:
    from tumorscope.config import JointExperiment
    from tumorscope.tasks.joint import JointTask

    cfg = JointExperiment.model_validate({"model": {"encoder": "resnet18",
                                                    "encoder_weights": None, "input_size": 64}})
    task = JointTask(cfg.model_dump(mode="json"), ["a", "b", "c"], load_pretrained=False)
    with caplog.at_level("WARNING", logger="tumorscope.train"):
        task.on_train_start()  # the EMA copy is in eval mode: that is no stray
    assert not caplog.records
    task.model.segmentation_head.eval()
    with caplog.at_level("WARNING", logger="tumorscope.train"):
        task.on_train_start()
    assert "start training in eval mode" in caplog.text and "segmentation_head" in caplog.text
