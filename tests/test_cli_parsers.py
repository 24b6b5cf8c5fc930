"""The CLI's wiring: every sub-command's parser names its handler, flags keep their aliases,
and user errors are one line on stderr with exit status 2."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tumorscope.cli import build_parser, main

COMMANDS = ["train", "evaluate", "cv", "calibrate", "predict", "export", "card", "serve", "results",
            "compare", "robustness", "embed", "augment", "demo", "info", "lgg", "explore",
            "check-data", "prepare", "pack", "synthesize", "realism"]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_sub_commands_keep_their_order() -> None:
    assert list(_subparsers(build_parser())) == COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_every_sub_command_sets_its_own_handler(command: str) -> None:
    handler = _subparsers(build_parser())[command].get_default("handler")
    assert callable(handler)
    assert handler.__module__ == f"tumorscope.commands.{command.replace('-', '_')}"


def test_parsed_arguments_carry_the_handler() -> None:
    args = build_parser().parse_args(["info", "--checkpoint", "m"])
    assert args.command == "info" and args.checkpoint == Path("m")
    assert args.handler is _subparsers(build_parser())["info"].get_default("handler")


@pytest.mark.parametrize("flag", ["--config", "--hparams"])
def test_hparams_is_an_alias_of_config(flag: str) -> None:
    args = build_parser().parse_args(["train", flag, "exp.yaml", "trainer.epochs=2"])
    assert args.config == Path("exp.yaml")
    assert args.overrides == ["trainer.epochs=2"]
    assert not hasattr(args, "hparams")


def test_gpus_is_the_old_name_of_devices() -> None:
    assert build_parser().parse_args(["train", "--gpus", "2"]).devices == "2"


def test_predict_without_files_is_one_line_before_loading_a_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the checkpoint does not exist: the missing files must be reported, not the model
    assert main(["predict", "--checkpoint", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "o")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("tumorscope predict: error: ")
    assert "at least one scan file" in lines[0]
    assert captured.out == ""
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("argv", "message"), [
    (["export", "--run", "r", "--format", "onnx"], "give the model with --checkpoint DIR"),
    (["export", "--checkpoint", "m", "--format", "safetensors"],
     "give the training run with --run RUN"),
    (["train", "--config", "a.yaml", "--model", "lgg/unet"], "not both"),
    (["augment"], "give an experiment YAML or --model NAME"),
])
def test_user_errors_are_one_line(argv: list[str], message: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tumorscope {argv[0]}: error: ")
    assert message in lines[0]


def test_verbose_shows_the_traceback() -> None:
    from tumorscope.errors import TumorscopeError

    with pytest.raises(TumorscopeError, match="at least one scan file"):
        main(["-v", "predict"])


def test_info_prints_the_card_without_training_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fixtures import save_random_model
    from tumorscope.checkpoint.store import read_card

    model = save_random_model(tmp_path / "m")
    card_path = model / "model.json"  # give the card a training config, as trained models have
    raw = json.loads(card_path.read_text(encoding="utf-8"))
    raw["training_config"] = {"name": "random-test-model", "task": "joint"}
    card_path.write_text(json.dumps(raw), encoding="utf-8")

    assert main(["info", "--checkpoint", str(model)]) == 0
    shown = json.loads(capsys.readouterr().out)
    model_id = read_card(model).model_id
    assert model_id is not None and model_id.startswith("random-test-model-")
    assert shown["model_id"] == model_id
    assert shown["classes"] == ["meningioma", "glioma", "pituitary"]
    assert "training_config" not in shown


def test_export_onnx_writes_into_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    from fixtures import save_random_model

    model = save_random_model(tmp_path / "m")
    assert main(["export", "--checkpoint", str(model), "--out", str(tmp_path / "x")]) == 0
    assert (tmp_path / "x" / "model.onnx").is_file()
    assert not (model / "model.onnx").exists()
    assert "max abs difference to PyTorch" in capsys.readouterr().out
