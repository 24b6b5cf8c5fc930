"""Runs interrupted at the worst moments (during validation after an epoch's last step, at
steps, while a checkpoint is being written), resumed each time, always finish, with
weights bit-identical to an uninterrupted run."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from fixtures import ENV, module_scratch, write_config
from tumorscope.config import load_config
from tumorscope.training import ckpt_io
from tumorscope.training.run import train

pytestmark = pytest.mark.slow
OVERRIDES = ["augment.enabled=true", "model.dropout=0.5", "trainer.checkpoint_every_n_steps=1"]


class _Kill(Exception):
    pass


class _KillAt(L.Callback):
    """Raises in the middle of training: at the start of step ``step``, or during the
    validation of epoch ``validation``."""

    def __init__(self, step: int | None = None, validation: int | None = None) -> None:
        self.step, self.validation = step, validation

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise _Kill

    def on_validation_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.current_epoch == self.validation and not trainer.sanity_checking:
            raise _Kill


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return ckpt_io.load_training_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, mat_dataset: Path) -> Iterator[Any]:
    with module_scratch(tmp_path_factory, "kills") as tmp:
        cfg_path = write_config(tmp, mat_dataset, epochs=3, log_every_n_steps=1)
        cfg = load_config(cfg_path, ["output.run_name=straight", *OVERRIDES])
        train(cfg)
        weights = _weights(cfg.run_dir)
        shutil.rmtree(cfg.run_dir)  # only its weights are compared
        yield cfg_path, weights


def test_kills_in_validation_and_at_steps_still_finish_identically(straight: Any) -> None:
    cfg_path, reference = straight
    cfg = load_config(cfg_path, ["output.run_name=killed", *OVERRIDES])
    schedule: list[dict[str, int]] = [{"validation": 0}, {"step": 4}, {"step": 5},
                                      {"validation": 1}, {"step": 8}]
    for n, kill in enumerate(schedule):
        with pytest.raises(_Kill):
            train(cfg, resume=n > 0, callbacks=[_KillAt(**kill)])
    train(cfg, resume=True)  # and then it finishes
    weights = _weights(cfg.run_dir)
    different = [k for k in reference if not torch.equal(reference[k], weights[k])]
    assert not different, different[:5]
    shutil.rmtree(cfg.run_dir)


def test_a_kill_while_writing_a_checkpoint(straight: Any, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    cfg_path, reference = straight
    cfg = load_config(cfg_path, ["output.run_name=torn", *OVERRIDES])
    real_save = torch.save
    calls = {"n": 0}

    def dying_save(obj: Any, f: Any, *a: Any, **k: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 5:  # the fifth checkpoint write dies half-way
            real_save(obj, f, *a, **k)
            f.truncate(f.tell() // 2)
            raise _Kill
        real_save(obj, f, *a, **k)

    monkeypatch.setattr(ckpt_io.torch, "save", dying_save)
    with pytest.raises(_Kill):
        train(cfg)
    monkeypatch.setattr(ckpt_io.torch, "save", real_save)
    folder = cfg.run_dir / "checkpoints"
    assert all(ckpt_io.load_training_checkpoint(p) for p in folder.glob("*.ckpt"))  # none torn
    train(cfg, resume=True)
    weights = _weights(cfg.run_dir)
    assert all(torch.equal(reference[k], weights[k]) for k in reference)
    shutil.rmtree(cfg.run_dir)


def _start(cfg_path: Path, run_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    """``tumorscope train`` in its own process: fresh, or ``--resume`` once the run exists."""
    exe = Path(sys.executable).with_name("tumorscope")
    args = ["train", "--resume", str(run_dir)] if (run_dir / "checkpoints").is_dir() else \
        ["train", "--config", str(cfg_path), "--run-name", run_dir.name, *OVERRIDES]
    with open(log, "ab") as out:
        return subprocess.Popen([str(exe), *args], env=ENV, stdout=out, stderr=out)


def _wait_for_checkpoint(proc: subprocess.Popen[bytes], run_dir: Path) -> None:
    """Until the run has written its first checkpoint (it is then mid-training)."""
    folder = run_dir / "checkpoints"
    while proc.poll() is None and not any(folder.glob("*.ckpt")):
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted_process(straight: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The same run in one undisturbed process: its weights and how long it took."""
    cfg_path, _ = straight
    run_dir = Path(cfg_path).parent / "runs" / "process"
    start = time.monotonic()
    proc = _start(cfg_path, run_dir, tmp_path_factory.mktemp("process") / "train.log")
    assert proc.wait(timeout=600) == 0
    duration = time.monotonic() - start
    weights = _weights(run_dir)
    shutil.rmtree(run_dir)
    return cfg_path, weights, duration


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_external_kill_9_schedules_finish_identically(uninterrupted_process: Any,
                                                             seed: int, tmp_path: Path) -> None:
    """SIGKILL from outside at seeded random moments (start-up, steps, validation, checkpoint
    writes alike), then ``--resume``, until the run ends by itself: same weights as the
    uninterrupted run."""
    cfg_path, reference, duration = uninterrupted_process
    run_dir = Path(cfg_path).parent / "runs" / f"kill9-{seed}"
    rng = random.Random(seed)
    log = tmp_path / "train.log"
    kills = 0
    for _ in range(12):  # bounded: at most 4 kills, then it must finish
        proc = _start(cfg_path, run_dir, log)
        if kills < 4:
            if kills == 0:  # the first kill lands mid-training, whatever the machine's speed
                _wait_for_checkpoint(proc, run_dir)
            try:  # later kills at random moments, possibly after the end
                proc.wait(timeout=rng.uniform(0.0, 0.5) if kills == 0 else
                          duration * rng.uniform(0.3, 1.1))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                continue
        else:
            proc.wait(timeout=600)
        assert proc.returncode == 0, log.read_text(errors="replace")[-3000:]
        break
    else:
        pytest.fail("the run never finished")
    assert kills >= 1, "no kill landed: the schedule did not interrupt the run"
    weights = _weights(run_dir)
    different = [k for k in reference if not torch.equal(reference[k], weights[k])]
    assert not different, different[:5]
    shutil.rmtree(run_dir)
