"""Pre-training on pix2pix slices per run (``pretrain``): each cross-validation fold draws its
synthetic set from a generator trained on that fold's training patients only, pre-trains on
it, starts the real run from those weights, and resumes step by step."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import pytest

from fixtures import TINY_CLASSIFY
from tumorscope.checkpoint.store import read_card
from tumorscope.cli import main
from tumorscope.config import ClassifyExperiment, load_config
from tumorscope.data.prepare import prepare_split
from tumorscope.errors import ConfigError
from tumorscope.experiments.cv import fold_config
from tumorscope.experiments.pretrain import pretrained_start, synthetic_config

PRETRAIN = """pretrain: {{synthetic: 9, gan_steps: 2, gan_size: 32, gan_batch_size: 2, gan_width: 8,
           epochs: 1}}
"""
CLASSIFY = TINY_CLASSIFY.replace("tinycls", "tinypre") + PRETRAIN


def tiny_config(tmp_path: Path, data: Path) -> Path:
    path = tmp_path / "pre.yaml"
    path.write_text(CLASSIFY.format(data=data, runs=tmp_path / "runs"))
    return path


def test_the_pre_training_run_reads_the_synthetic_set_into_the_run_folder(
        tmp_path: Path, mat_dataset: Path) -> None:
    cfg = load_config(tiny_config(tmp_path, mat_dataset),
                      ["stages=[{epochs: 1, input_size: 32, freeze_body: true}, {epochs: 2}]",
                       "optim.train_only=[head]", "scheduler.warmup_epochs=5",
                       "trainer.devices=2", "trainer.strategy=ddp"])
    pre = synthetic_config(cfg, tmp_path / "syn", epochs=3, sources=40)
    assert isinstance(pre, ClassifyExperiment)
    assert (pre.data.dataset, pre.data.root, pre.data.folds) == ("synthetic",
                                                                 str(tmp_path / "syn"), 10)
    assert pre.run_dir == cfg.run_dir / "pretrain" / "run"
    assert pre.trainer.epochs == 3 and pre.stages == [] and pre.pretrain is None
    assert pre.init_weights is None and not pre.early_stopping.enabled
    # the whole body learns from the synthetic slices, in one process
    assert pre.optim.train_only is None and pre.optim.freeze_encoder_epochs == 0
    assert pre.scheduler.warmup_epochs == 2 and pre.trainer.devices == 1
    assert pre.trainer.strategy == "auto"
    assert synthetic_config(cfg, tmp_path / "syn", 1, sources=4).data.folds == 4
    with pytest.raises(ConfigError, match="at least 3"):
        synthetic_config(cfg, tmp_path / "syn", 1, sources=2)


def test_a_foreign_warm_start_and_a_bad_size_are_refused(tmp_path: Path,
                                                          mat_dataset: Path) -> None:
    config = tiny_config(tmp_path, mat_dataset)
    with pytest.raises(ConfigError, match="init_weights"):
        pretrained_start(load_config(config, ["init_weights=models/figshare"]))
    with pytest.raises(ConfigError, match="multiple of 16"):
        load_config(config, ["pretrain.gan_size=40"])
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_what_train_would_refuse_is_refused_before_any_pre_training(
        tmp_path: Path, mat_dataset: Path) -> None:
    config = tiny_config(tmp_path, mat_dataset)
    cfg = load_config(config)
    (cfg.run_dir / "checkpoints").mkdir(parents=True)
    (cfg.run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(ConfigError, match="already has checkpoints"):
        pretrained_start(cfg)
    inside = load_config(config, [f"output.root={mat_dataset / 'runs'}"])
    with pytest.raises(ConfigError, match="inside the dataset"):
        pretrained_start(inside)
    assert not (cfg.run_dir / "pretrain").exists() and not (mat_dataset / "runs").exists()


def test_an_override_opens_the_optional_section_with_its_defaults() -> None:
    cfg = load_config(Path("configs/classify/capsule-figshare.yaml"), ["pretrain.epochs=3"])
    assert isinstance(cfg, ClassifyExperiment) and cfg.pretrain is not None
    assert (cfg.pretrain.epochs, cfg.pretrain.synthetic, cfg.pretrain.gan_steps) == (3, 7000,
                                                                                     5000)
    assert load_config(Path("configs/classify/capsule-figshare.yaml")).pretrain is None
    with pytest.raises(ConfigError, match=r"pretrain\.nope"):
        load_config(Path("configs/classify/capsule-figshare.yaml"), ["pretrain.nope=1"])
    with pytest.raises(ConfigError, match=r"unknown key 'stages\.epochs'"):  # a list: no keys
        load_config(Path("configs/classify/capsule-figshare.yaml"), ["stages.epochs=3"])


def read_sources(manifest: Path) -> set[str]:
    with manifest.open(newline="") as f:
        return {row["source_patient"] for row in csv.DictReader(f)}


@pytest.mark.slow
def test_each_fold_pre_trains_on_its_own_training_patients_and_resumes(
        tmp_path: Path, mat_dataset: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_config(tmp_path, mat_dataset)
    out = tmp_path / "cv"
    argv = ["cv", "--config", str(config), "--folds", "3", "--only", "0", "2", "--out", str(out)]
    assert main(argv) == 0
    cfg = load_config(config, [])
    generators = []
    for k in (0, 2):
        run = tmp_path / "runs" / f"tinypre-cv3-f{k}"
        _, split = prepare_split(fold_config(cfg, 3, k))
        training = {r.patient for r in split.train}
        held_out = {r.patient for r in split.val + split.test}
        trained = json.loads((run / "pretrain" / "generator" / "patients.json").read_text())
        assert set(trained["patients"]) == training  # the generator saw this fold's training
        assert read_sources(run / "pretrain" / "synthetic" / "manifest.csv") <= training
        assert not held_out & (set(trained["patients"]) | read_sources(
            run / "pretrain" / "synthetic" / "manifest.csv"))
        trained_by = read_card(run / "model").training_config or {}
        assert trained_by["init_weights"] == str(run / "pretrain" / "run" / "model")
        assert trained_by["pretrain"]["synthetic"] == 9
        assert read_card(run / "pretrain" / "run" / "model").data.dataset == "synthetic"
        generators.append(trained["patients"])
    assert generators[0] != generators[1]  # one generator per fold

    # killed after pre-training, before the real run saved anything: only the real run reruns
    run = tmp_path / "runs" / "tinypre-cv3-f0"
    shutil.rmtree(run / "model")
    shutil.rmtree(run / "checkpoints")
    (out / "fold-0" / "metrics.json").unlink()
    drawn = (run / "pretrain" / "synthetic" / "manifest.csv").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        assert main(argv) == 0
    assert "synthetic set" in caplog.text and "already drawn" in caplog.text
    assert f"run {run / 'pretrain' / 'run'} already finished" in caplog.text
    assert (run / "pretrain" / "synthetic" / "manifest.csv").stat().st_mtime_ns == drawn
    assert (run / "model" / "model.json").is_file() and (out / "fold-0" / "metrics.json").is_file()

    # killed during the real run: it resumes from its checkpoint and still records its start
    shutil.rmtree(run / "model")
    (out / "fold-0" / "metrics.json").unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(argv) == 0
    assert f"resuming run {run}" in caplog.text
    trained_by = read_card(run / "model").training_config or {}
    assert trained_by["init_weights"] == str(run / "pretrain" / "run" / "model")

    # fold 2 killed outright while drawing: the generator is kept, the torn draw cleared
    run2 = tmp_path / "runs" / "tinypre-cv3-f2"
    for gone in ("model", "checkpoints", "config.yaml", "pretrain/synthetic", "pretrain/run"):
        path = run2 / gone
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (out / "fold-2" / "metrics.json").unlink()
    torn = run2 / "pretrain" / ".synthetic.x1.partial"
    torn.mkdir()
    losses = (run2 / "pretrain" / "generator" / "losses.csv").read_text()
    assert main(argv) == 0
    assert not torn.exists() and (run2 / "pretrain" / "synthetic" / "manifest.csv").is_file()
    assert (run2 / "pretrain" / "generator" / "losses.csv").read_text() == losses  # not retrained
    assert (run2 / "model" / "model.json").is_file()

    # other pre-training settings never reuse these runs: refused in one line, nothing changed
    for again in ([*argv, "pretrain.epochs=2"],
                  [*argv[:-1], str(tmp_path / "cv-other"), "pretrain.epochs=2"]):
        capsys.readouterr()
        assert main(again) == 2
        err = capsys.readouterr().err.strip()
        assert "pretrain" in err and len(err.splitlines()) == 1
    assert read_card(run / "model").training_config == trained_by


@pytest.mark.slow
def test_train_pre_trains_first_and_refuses_a_second_start(
        tmp_path: Path, mat_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_config(tmp_path, mat_dataset)
    assert main(["train", "--config", str(config)]) == 0
    run = tmp_path / "runs" / "tinypre"
    trained_by = read_card(run / "model").training_config or {}
    assert trained_by["init_weights"] == str(run / "pretrain" / "run" / "model")
    _, split = prepare_split(load_config(config))
    trained = json.loads((run / "pretrain" / "generator" / "patients.json").read_text())
    assert set(trained["patients"]) == {r.patient for r in split.train}
    capsys.readouterr()
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "already has checkpoints" in err and len(err.splitlines()) == 1
