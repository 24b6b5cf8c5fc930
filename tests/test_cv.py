"""``tumorscope cv``: folds partition the patients (shipped figshare folds at k = 5, computed
ones otherwise), a 7-fold model evaluates on a fold figshare does not ship, and tiny
cross-validations run end to end, summarise, and skip or resume folds when run again."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures import TINY_CLASSIFY as CLASSIFY
from fixtures import blob_slice, write_config
from tumorscope.cli import main
from tumorscope.config import ExperimentConfig, JointExperiment, load_config, require_task
from tumorscope.data.figshare import CLASSES
from tumorscope.errors import TumorscopeError
from tumorscope.evaluation.result import EvaluationResult
from tumorscope.experiments.cv import (
    check_partition,
    claim_output,
    cross_validate,
    fold_config,
    fold_patients,
)

PATIENTS = 21  # 7 per class: 7 stratified folds hold one patient of each class
PIDS = {f"P{p:03d}" for p in range(PATIENTS)}


def make_figshare_compact(root: Path, patients: int = PATIENTS, slices: int = 2,
                          size: int = 64) -> Path:
    """``images/<id>.png``, ``masks/<id>.png`` and ``meta.csv`` whose ``fold`` column ships 5
    patient-wise folds (patient p in fold p % 5; label p % 3)."""
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    rows = ["id,pid,label,label_name,fold"]
    for n in range(1, patients * slices + 1):
        p = (n - 1) // slices
        image, mask = blob_slice(size, p % 3, rng)
        Image.fromarray(np.clip(image / 12, 0, 255).astype(np.uint8)).save(
            root / "images" / f"{n}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"{n}.png")
        rows.append(f"{n},P{p:03d},{p % 3 + 1},{CLASSES[p % 3]},{p % 5}")
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def compact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_figshare_compact(tmp_path_factory.mktemp("figshare") / "figshare")


def compact_config(data: Path, out: Path, *overrides: str) -> ExperimentConfig:
    return load_config(None, ["data.dataset=figshare", f"data.root={data}",
                              f"output.root={out}", "model.encoder=resnet18",
                              "model.encoder_weights=none", "model.input_size=64", *overrides])


def test_five_folds_are_the_shipped_ones(compact: Path, tmp_path: Path) -> None:
    held_out = fold_patients(compact_config(compact, tmp_path), 5)
    assert held_out == [{f"P{p:03d}" for p in range(PATIENTS) if p % 5 == k} for k in range(5)]


def test_seven_folds_are_computed_by_patient_and_stratified(compact: Path,
                                                            tmp_path: Path) -> None:
    held_out = fold_patients(compact_config(compact, tmp_path), 7)
    assert len(held_out) == 7 and set().union(*held_out) == PIDS
    assert sum(len(fold) for fold in held_out) == PATIENTS  # disjoint
    assert all(sorted(int(p[1:]) % 3 for p in fold) == [0, 1, 2] for fold in held_out)


def test_a_fold_config_holds_out_k_and_validates_on_the_next(tmp_path: Path) -> None:
    cfg = load_config(None, [f"output.root={tmp_path}", "output.run_name=exp"])
    last = fold_config(cfg, 7, 6)
    assert (last.data.folds, last.data.test_fold, last.data.val_fold) == (7, 6, 0)
    assert last.run_dir == tmp_path / "exp-cv7-f6"


@pytest.mark.parametrize("held_out,problem", [
    ([{"a"}, {"b"}, set()], "fold(s) [2] hold no patient"),
    ([{"a", "b"}, {"b"}, {"c"}], "['b'] in more than one fold"),
    ([{"a"}, {"b"}], "['c'] in no fold"),
])
def test_folds_that_are_no_partition_are_one_line(held_out: list[set[str]],
                                                  problem: str) -> None:
    with pytest.raises(TumorscopeError, match="not a partition") as err:
        check_partition(held_out, {"a", "b", "c"}, "data")
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_an_output_folder_takes_one_cross_validation(tmp_path: Path) -> None:
    cfg = load_config(None, [f"output.root={tmp_path}"])
    claim_output(cfg, 5, tmp_path / "cv")
    claim_output(cfg, 5, tmp_path / "cv")  # the same one again: resuming
    with pytest.raises(TumorscopeError, match="folds differ"):
        claim_output(cfg, 7, tmp_path / "cv")


@pytest.mark.parametrize("argv,flag", [(["--folds", "1"], "--folds"),
                                       (["--folds", "3", "--only", "3"], "--only")])
def test_bad_folds_are_one_line_before_any_training(
        argv: list[str], flag: str, tmp_path: Path, mat_dataset: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, mat_dataset)
    assert main(["cv", "--config", str(config), *argv, "--out", str(tmp_path / "cv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err
    assert not (tmp_path / "runs").exists()


def test_a_seven_fold_model_evaluates_on_a_fold_figshare_does_not_ship(
        compact: Path, tmp_path: Path) -> None:
    import torch

    from tumorscope.checkpoint.card import build_card
    from tumorscope.checkpoint.store import save_checkpoint
    from tumorscope.data.prepare import prepare_split
    from tumorscope.evaluation.evaluate import evaluate
    from tumorscope.models import joint_from_config
    from tumorscope.transforms.slice2d import card_preprocessing

    cfg = compact_config(compact, tmp_path, "data.folds=7", "data.test_fold=6",
                         "data.val_fold=0", "model.attention=none")
    index, split = prepare_split(cfg)
    torch.manual_seed(0)
    model = require_task(cfg, JointExperiment).model
    net = joint_from_config(model.model_dump(), 3, load_pretrained=False)
    save_checkpoint(tmp_path / "model", net.state_dict(),
                    build_card(cfg, index, split, card_preprocessing(cfg, None)))
    result = evaluate(tmp_path / "model", 6, tmp_path / "eval", gallery=0)
    assert result.fold_role == "test" and result.split.patients == 3
    assert result.split.slices == 6 and (tmp_path / "eval" / "metrics.json").is_file()


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_joint_cross_validation_skips_finished_folds(
        mat_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = load_config(write_config(tmp_path, mat_dataset, epochs=1, limit_train_batches=2))
    out = tmp_path / "cv"
    with caplog.at_level(logging.INFO, logger="tumorscope.cv"):
        result = cross_validate(cfg, 3, out)
    assert result.complete and "fold 3/3: holding out fold 2" in caplog.text
    rows = read_rows(out / "cv.csv")
    assert [r["fold"] for r in rows] == ["0", "1", "2"]
    assert {"slices", "patients", "accuracy", "macro_f1", "f1_glioma",
            "dice_mean_tumour"} <= set(rows[0])
    assert sum(int(r["patients"]) for r in rows) == 9  # every patient held out once
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["finished"] == [0, 1, 2]
    assert {"mean", "std", "ci95_low", "ci95_high", "folds"} <= set(summary["metrics"]["accuracy"])
    assert summary["pooled"]["slices"] == 36 and summary["pooled"]["patients"] == 9
    assert (out / "cv.png").stat().st_size > 0 and (out / "fold-1" / "report.html").is_file()
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["tiny-cv3-f0", "tiny-cv3-f1", "tiny-cv3-f2"]

    written = {k: os.stat(out / f"fold-{k}" / "metrics.json").st_mtime_ns for k in range(3)}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tumorscope"):
        again = cross_validate(cfg, 3, out)
    assert caplog.text.count("finished earlier") == 3 and "training run" not in caplog.text
    assert written == {k: os.stat(out / f"fold-{k}" / "metrics.json").st_mtime_ns
                       for k in range(3)}
    assert again.summary == result.summary




@pytest.mark.slow
def test_classify_cross_validation_of_some_folds_resumes_an_unexported_run(
        mat_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cls.yaml"
    config.write_text(CLASSIFY.format(data=mat_dataset, runs=tmp_path / "runs"))
    out = tmp_path / "cv"
    argv = ["cv", "--hparams", str(config), "--folds", "3", "--only", "1", "--out", str(out)]
    assert main(argv) == 0
    assert "1 of 3 folds finished" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] == [1] and not summary["complete"]
    assert summary["metrics"]["accuracy"]["std"] is None  # one fold: no spread
    assert "dice_mean_tumour" not in read_rows(out / "cv.csv")[0]

    run = tmp_path / "runs" / "tinycls-cv3-f1"  # as if killed after training, before export
    shutil.rmtree(run / "model")
    (out / "fold-1" / "metrics.json").unlink()
    with caplog.at_level(logging.INFO, logger="tumorscope"):
        assert main(argv) == 0
    assert f"resuming run {run}" in caplog.text
    assert (run / "model" / "model.json").is_file() and (out / "fold-1" / "metrics.json").is_file()


def test_cv_refuses_a_warm_start(tmp_path: Path, mat_dataset: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    from fixtures import write_config
    from tumorscope.cli import main

    config = write_config(tmp_path, mat_dataset)
    code = main(["cv", "--config", str(config), "--folds", "3", "--out", str(tmp_path / "cv"),
                 "init_weights=models/figshare"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "init_weights" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "cv").exists()


def volume_result(fold: int, cases: dict[str, float]) -> EvaluationResult:
    """A BraTS-style evaluation of ``fold``: the given WT Dice per case."""
    summary = {"mean": 0.0, "median": 0.0, "std": 0.0, "ci_low": 0.0, "ci_high": 0.0,
               "cases": len(cases)}
    return EvaluationResult.model_validate({
        "checkpoint": f"runs/f{fold}/model", "fold": fold, "dataset": "brats",
        "split": {"test_fold": fold, "slices": 0, "patients": len(cases)},
        "cases": {"per_case": {c: {"WT_dice": d, "WT_hd95": 10 * fold, "WT_sensitivity": 1.0}
                               for c, d in cases.items()},
                  "summary": {"WT_dice": {**summary, "mean": sum(cases.values()) / len(cases)},
                              "WT_hd95": {**summary, "mean": 10.0 * fold}}}})


def slice_result(fold: int, rows: list[tuple[str, str, str]]) -> EvaluationResult:
    """A slice classifier's evaluation of ``fold``: (patient, true, predicted) per slice."""
    classes = ["a", "b"]
    cm = [[sum(t == x and p == y for _, t, p in rows) for y in classes] for x in classes]
    right = sum(t == p for _, t, p in rows) / len(rows)
    return EvaluationResult.model_validate({
        "checkpoint": f"runs/f{fold}/model", "fold": fold, "dataset": "figshare",
        "split": {"test_fold": fold, "slices": len(rows),
                  "patients": len({r[0] for r in rows})},
        "classification": {"accuracy": right, "macro_f1": right, "per_class": {},
                           "confusion_matrix": cm, "classes": classes},
        "per_image": [{"id": f"{fold}-{i}", "patient": pat, "image": "x.png", "true": t,
                       "predicted": p, "dice": 0.0, "has_tumour": True}
                      for i, (pat, t, p) in enumerate(rows)]})


def test_slice_folds_pool_accuracy_with_a_patient_bootstrap_interval(tmp_path: Path) -> None:
    from tumorscope.experiments.cv import PLAN, aggregate, cv_markdown

    out = tmp_path / "cv"
    # fold 0: patient P right on all 4 slices, Q wrong on all 4; fold 1: R and S right
    folds = {0: [("P", "a", "a")] * 4 + [("Q", "b", "a")] * 4,
             1: [("R", "a", "a")] * 2 + [("S", "b", "b")] * 2}
    for k, rows in folds.items():
        slice_result(k, rows).save(out / f"fold-{k}" / "metrics.json")
    (out / PLAN).write_text(json.dumps({"folds": 2}))
    result = aggregate(out, 2)
    pooled = result.summary["pooled"]
    assert pooled["accuracy"] == pytest.approx(8 / 12) and pooled["patients"] == 4
    low, high = pooled["accuracy_ci95"]
    # whole patients are resampled: with Q drawn every time accuracy is 0 on its slices, so
    # the interval reaches far below the pooled value; per-slice resampling would not
    assert low < 0.4 < 8 / 12 < high <= 1.0
    text = cv_markdown(result)
    assert f"accuracy 0.667 [{low:.3f}, {high:.3f}] (patient-level bootstrap" in text


def test_volume_folds_pool_every_held_out_case_into_the_card(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tumorscope.experiments.cv import PLAN, aggregate, cv_markdown, read_plan

    out = tmp_path / "cv"
    folds = {0: {"A": 0.9, "B": 0.7}, 1: {"C": 0.5, "D": 0.3}}
    for k, cases in folds.items():
        volume_result(k, cases).save(out / f"fold-{k}" / "metrics.json")
    with pytest.raises(TumorscopeError, match="not a `tumorscope cv` output folder"):
        read_plan(out)
    (out / PLAN).write_text(json.dumps({"folds": 2}))
    result = aggregate(out, read_plan(out))
    assert [r["WT_dice"] for r in result.rows] == pytest.approx([0.8, 0.4])
    cases = result.summary["pooled_cases"]
    assert set(cases["cases"]) == {"A", "B", "C", "D"} and cases["cases"]["C"]["fold"] == 1
    wt = cases["summary"]["WT_dice"]
    assert wt["mean"] == pytest.approx(0.6) and 0.3 <= wt["ci95_low"] < 0.6 < wt["ci95_high"]
    assert "WT_sensitivity" not in cases["summary"]  # Dice and HD95 only
    assert result.summary["pooled"] is None  # nothing classified
    text = cv_markdown(result, "tumorscope cv --folds 2")
    assert "| 0 | 2 | 0.800 | 0.0 |" in text and "| 1 | 2 | 0.400 | 10.0 |" in text
    assert "| mean ± std [95% t-interval] | | 0.600 ± 0.283 [" in text
    assert "| C | 1 | 0.500 | 10.0 |" in text
    assert (out / "cv.png").stat().st_size > 0
    assert text.rstrip().endswith("Command: `tumorscope cv --folds 2`")
