"""Training checkpoints: a crafted .ckpt never runs its payload, a torn newest checkpoint is
passed over on resume, and checkpoints are written atomically in their own folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures import cli, module_scratch, write_config
from tumorscope.config import load_config
from tumorscope.errors import CheckpointError
from tumorscope.training.ckpt_io import load_training_checkpoint

pytestmark = pytest.mark.slow


class _Payload:
    """Unpickling this writes a marker file: what an attacker's checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.write_text, (self.marker, "pwned"))


def _crafted(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"state_dict": {}, "epoch": 0, "x": _Payload(marker)}, path)
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, mat_dataset: Path
                 ) -> Iterator[Path]:
    from tumorscope.training.run import train

    with module_scratch(tmp_path_factory, "safety") as tmp:
        cfg = load_config(write_config(tmp, mat_dataset, epochs=2), ["ema.enabled=false"])
        train(cfg)
        yield cfg.run_dir


def test_crafted_checkpoints_are_refused_without_running(tmp_path: Path, finished_run: Path,
                                                         mat_dataset: Path) -> None:
    marker = tmp_path / "marker"
    crafted = _crafted(tmp_path / "evil.ckpt", marker)
    with pytest.raises(CheckpointError, match="refused"):
        load_training_checkpoint(crafted)
    res = cli("export", "--run", str(finished_run), "--source", str(crafted), "--out",
              str(tmp_path / "out"), cwd=tmp_path)
    assert res.returncode == 2 and "refused" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()

    run = tmp_path / "runs" / "victim"  # a run folder whose last.ckpt was replaced
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text((finished_run / "config.yaml").read_text())
    _crafted(run / "checkpoints" / "last.ckpt", marker)
    res = cli("train", "--resume", str(run), cwd=tmp_path)
    assert res.returncode == 2 and "refused" in res.stderr, res.stderr[-1500:]
    assert not marker.exists()  # the payload never ran
    import torch

    torch.load(crafted, weights_only=False)  # and it would have: the file carries a payload
    assert marker.read_text() == "pwned"


def test_a_torn_newest_checkpoint_is_passed_over(tmp_path: Path, mat_dataset: Path) -> None:
    from tumorscope.training.run import train

    cfg = load_config(write_config(tmp_path, mat_dataset, epochs=2), ["ema.enabled=false"])
    train(cfg)
    run = cfg.run_dir
    step, last = run / "checkpoints" / "step.ckpt", run / "checkpoints" / "last.ckpt"
    data = step.read_bytes()
    step.write_bytes(data[: len(data) // 10])  # a kill during the copy: truncated, newest
    orphan = run / "checkpoints" / ".step.ckpt.tmp-12345"
    orphan.write_bytes(b"partial")
    assert step.stat().st_mtime_ns >= last.stat().st_mtime_ns
    res = cli("train", "--resume", str(run), "trainer.epochs=3", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "step.ckpt: not a readable checkpoint" in res.stdout
    assert "trying an older checkpoint" in res.stdout and not orphan.exists()
    assert load_training_checkpoint(last)["epoch"] == 2  # resumed from last.ckpt, finished
    assert load_training_checkpoint(step)["global_step"] == 8  # replaced (none after a last step)
    assert not list((run / "checkpoints").glob(".*tmp*"))  # atomic writes left nothing behind
