"""Monte Carlo dropout: the runner, the mutual information, and the CLI option."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tumorscope.errors import CheckpointError, TumorscopeError
from tumorscope.inference.runtime import MCDropoutRunner, TimedRunner, mc_samples
from tumorscope.uncertainty import mutual_information

pytestmark = pytest.mark.usefixtures("one_thread")


class _Head(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.fc, self.drop = nn.Linear(8, 3), nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.fc(self.drop(x.flatten(1))),)


def test_mutual_information_is_zero_when_passes_agree_and_grows_when_they_differ() -> None:
    agree = np.tile([[0.7, 0.2, 0.1]], (5, 2, 1))
    assert mutual_information(agree) == pytest.approx([0.0, 0.0], abs=1e-9)
    differ = np.array([[[0.9, 0.05, 0.05]], [[0.05, 0.9, 0.05]]])
    split = mutual_information(differ)
    assert split.shape == (1,) and split[0] > 0.3


def test_runner_samples_with_dropout_active_and_restores_eval_mode() -> None:
    torch.manual_seed(0)
    model = _Head(0.5)
    runner = MCDropoutRunner(model, ("class_logits",), samples=6)
    batch = np.random.default_rng(0).normal(size=(4, 1, 2, 4)).astype(np.float32)
    out = runner(batch)
    assert out["class_logits_mc"].shape == (6, 4, 3)
    assert np.allclose(out["class_logits"], out["class_logits_mc"].mean(axis=0), atol=1e-6)
    assert np.ptp(out["class_logits_mc"], axis=0).max() > 0  # the passes differ
    assert not model.drop.training and not model.training
    assert mc_samples(runner) == 6 and mc_samples(TimedRunner(runner)) == 6


def test_runner_refuses_a_network_without_dropout_or_too_few_samples() -> None:
    with pytest.raises(CheckpointError, match="no dropout layer"):
        MCDropoutRunner(_Head(0.0), ("class_logits",), samples=4)
    with pytest.raises(TumorscopeError, match="at least 2"):
        MCDropoutRunner(_Head(0.5), ("class_logits",), samples=1)


@pytest.mark.slow
def test_predict_and_evaluate_report_mc_dropout_uncertainty(
        tmp_path: Path, mat_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fixtures import save_carded_model
    from tumorscope.cli import main

    model = save_carded_model(tmp_path / "m", mat_dataset)  # joint model, head dropout 0.2
    scan = sorted(mat_dataset.glob("*.mat"))[0]
    assert main(["predict", str(scan), "--checkpoint", str(model), "--out",
                 str(tmp_path / "pred"), "--mc-dropout", "4"]) == 0
    record = json.loads((tmp_path / "pred" / f"{scan.stem}.json").read_text())
    assert record["uncertainty"]["samples"] == 4
    assert record["uncertainty"]["mutual_information"] >= 0
    assert main(["evaluate", "--checkpoint", str(model), "--data-root", str(mat_dataset),
                 "--out", str(tmp_path / "ev"), "--mc-dropout", "3"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["uncertainty"]["samples"] == 3
    capsys.readouterr()
    assert main(["predict", str(scan), "--checkpoint", str(model), "--out",
                 str(tmp_path / "p2"), "--mc-dropout", "4", "--backend", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert "torch backend only" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "p2").exists()
