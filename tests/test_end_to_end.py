"""The real CLI in subprocesses on generated figshare-format data: train, kill, resume,
evaluate, predict; a 2-process DDP run; bad input never leaves partial output."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures import ENV, cli, module_scratch, write_config

pytestmark = pytest.mark.slow

def test_train_kill_resume_evaluate_predict(tmp_path: Path, mat_dataset: Path) -> None:
    config = write_config(tmp_path, mat_dataset, epochs=400)
    exe = Path(sys.executable).with_name("tumorscope")
    proc = subprocess.Popen([str(exe), "train", "--config", str(config)], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = tmp_path / "runs" / "tiny"
    deadline = time.time() + 240
    while not list((run / "checkpoints").glob("last*.ckpt")) and time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.5)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)  # the worst interruption: no chance to clean up
    proc.wait()
    assert not (run / "model").exists()

    again = cli("train", "--config", str(config), cwd=tmp_path)
    assert again.returncode == 2 and "--resume" in again.stderr

    resumed = cli("train", "--resume", str(run), "trainer.epochs=3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Restoring states from the checkpoint" in resumed.stdout + resumed.stderr
    # the EMA copy is in eval mode on purpose; Lightning's count of it is not shown
    assert "in eval mode at the start" not in resumed.stdout + resumed.stderr
    card = json.loads((run / "model" / "model.json").read_text())
    assert card["classes"] == ["meningioma", "glioma", "pituitary"]
    assert card["data"]["split"]["test_fold"] == 0
    assert card["preprocessing"]["normalization"] == "global" and card["preprocessing"]["stats"]
    from tumorscope.training.history import read_run_metrics

    logged = read_run_metrics(run)
    assert sorted(logged["epoch"].dropna().unique().astype(int)) == [0, 1, 2]
    assert logged["val/dice"].notna().sum() >= 3
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))

    ev = cli("evaluate", "--checkpoint", str(run / "model"), "--fold", "0",
             "--out", str(tmp_path / "eval"), cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["fold_role"] == "test" and metrics["split"]["slices"] == 12
    cls = metrics["classification"]
    rows = metrics["per_image"]
    assert len(rows) == 12
    assert cls["accuracy"] == pytest.approx(sum(r["true"] == r["predicted"] for r in rows) / 12)
    counted = [[sum(r["true"] == t and r["predicted"] == p for r in rows) for p in cls["classes"]]
               for t in cls["classes"]]
    assert cls["confusion_matrix"] == counted  # the matrix agrees with the per-slice rows
    report = (tmp_path / "eval" / "report.html").read_text()
    assert metrics["model_id"] in report and f"<td>{cls['accuracy']:.3f}</td>" in report
    for name, scores in cls["per_class"].items():  # the per-class table shows every class
        assert f"<td>{name}</td><td>{scores['precision']:.3f}</td>" in report
    assert report.count("data:image/png;base64") >= 3
    assert "Training curves" in report

    train_fold = cli("evaluate", "--checkpoint", str(run / "model"), "--fold", "2",
                     "--out", str(tmp_path / "eval2"), cwd=tmp_path)
    assert train_fold.returncode == 2 and "used to train" in train_fold.stderr

    out = tmp_path / "pred"
    pr = cli("predict", str(mat_dataset / "1.mat"), str(mat_dataset / "2.mat"),
             "--checkpoint", str(run / "model"), "--out", str(out), cwd=tmp_path)
    assert pr.returncode == 0, pr.stderr
    record = json.loads((out / "1.json").read_text())
    assert set(record["probabilities"]) == set(card["classes"])
    assert sum(record["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert (out / "1_mask.png").is_file() and (out / "1_overlay.png").is_file()
    assert record["model_id"] == card["model_id"]

    half = cli("export", "--run", str(run), "--out", str(tmp_path / "half"), "--half",
               cwd=tmp_path)
    assert half.returncode == 0, half.stderr
    half_card = json.loads((tmp_path / "half" / "model.json").read_text())
    assert half_card["weights_dtype"] == "float16" and half_card["validation"]
    size = (tmp_path / "half" / "model.safetensors").stat().st_size
    assert size < 0.6 * (run / "model" / "model.safetensors").stat().st_size
    from tumorscope.inference.predictor import Predictor

    full_p, half_p = (Predictor.from_checkpoint(p) for p in (run / "model", tmp_path / "half"))
    for mat in sorted(mat_dataset.glob("*.mat"))[:6]:
        a, b = full_p.predict_file(mat), half_p.predict_file(mat)
        assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in a.probabilities) < 0.02


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, mat_dataset: Path) -> Iterator[Path]:
    """A one-epoch model on the generated data, shared by the prediction tests."""
    with module_scratch(tmp_path_factory, "tiny_model") as tmp:
        config = write_config(tmp, mat_dataset, epochs=1)
        res = cli("train", "--config", str(config), cwd=tmp)
        assert res.returncode == 0, res.stderr
        yield tmp / "runs" / "tiny" / "model"


def test_predict_nifti_volume_writes_nifti_mask(tmp_path: Path, tiny_model: Path) -> None:
    import nibabel as nib
    import numpy as np

    from fixtures import write_nifti

    vol = np.random.default_rng(0).normal(100, 10, (48, 40, 5)).astype(np.float32)
    write_nifti(tmp_path / "vol.nii.gz", vol, zooms=(0.5, 0.5, 2.0))
    pr = cli("predict", str(tmp_path / "vol.nii.gz"), "--checkpoint",
             str(tiny_model), "--out", str(tmp_path / "p"), cwd=tmp_path)
    assert pr.returncode == 0, pr.stderr
    mask = nib.load(str(tmp_path / "p" / "vol_mask.nii.gz"))
    assert mask.shape == (48, 40, 5)
    np.testing.assert_allclose(np.diag(mask.affine)[:3], (0.5, 0.5, 2.0))
    record = json.loads((tmp_path / "p" / "vol.json").read_text())
    assert record["slices"] == 5 and "tumour_volume_mm3" in record


def test_ddp_two_processes_on_cpu(tmp_path: Path, mat_dataset: Path) -> None:
    """The shipped default recipe (scSE attention, EMA, Lite0) under DDP: 2 gloo processes, a
    few steps each (an unused parameter stops DDP at the second step)."""
    repo = Path(__file__).resolve().parents[1]
    res = cli("train", "--config", str(repo / "configs/figshare/joint-lite0.yaml"), "--devices",
              "2", "--strategy", "ddp", "data.dataset=figshare-mat", f"data.root={mat_dataset}",
              "data.folds=3", "data.fold_source=computed", "model.input_size=64",
              "trainer.epochs=1", "trainer.batch_size=2", "trainer.accelerator=cpu",
              f"output.root={tmp_path / 'runs'}", "output.run_name=ddp", cwd=tmp_path,
              timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    text = res.stdout + res.stderr
    assert "GLOBAL_RANK: 1" in text or "distributed_backend=gloo" in text
    assert "[epoch 0] step=3" in text  # each rank took several steps
    assert (tmp_path / "runs" / "ddp" / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize("content,fragment", [
    (b"", "empty"), (b"not an image at all", "not a readable image"),
])
def test_predict_bad_file_leaves_nothing(tmp_path: Path, mat_dataset: Path, tiny_model: Path,
                                         content: bytes, fragment: str) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    out = tmp_path / "out"
    res = cli("predict", str(mat_dataset / "1.mat"), str(bad), "--checkpoint",
              str(tiny_model), "--out", str(out), cwd=tmp_path)
    assert res.returncode == 2
    assert str(bad) in res.stderr and fragment in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists() or not any(out.iterdir())


def test_cli_config_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("model:\n  input_size: big\n")
    res = cli("train", "--config", str(tmp_path / "c.yaml"), cwd=tmp_path)
    assert res.returncode == 2 and "model.input_size" in res.stderr
    assert "Traceback" not in res.stderr
    res = cli("train", "--config", str(tmp_path / "c.yaml"), "nonsense.key=1", cwd=tmp_path)
    assert res.returncode == 2 and "unknown key 'nonsense'" in res.stderr
    res = cli("predict", str(tmp_path / "missing.dcm"), "--checkpoint", str(tmp_path / "none"),
              cwd=tmp_path)
    assert res.returncode == 2 and "checkpoint not found" in res.stderr


def test_onnx_export_agrees_with_pytorch(tmp_path: Path, tiny_model: Path,
                                         mat_dataset: Path) -> None:
    pytest.importorskip("onnxruntime")
    import shutil

    import numpy as np

    from tumorscope.inference.predictor import Predictor

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    res = cli("export", "--checkpoint", str(model), "--format", "onnx", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (model / "model.onnx").is_file()
    torch_p = Predictor.from_checkpoint(model, backend="torch")
    onnx_p = Predictor.from_checkpoint(model, backend="auto")
    assert (torch_p.backend, onnx_p.backend) == ("torch", "onnx")
    for mat in sorted(mat_dataset.glob("*.mat"))[:8]:
        a, b = torch_p.predict_file(mat), onnx_p.predict_file(mat)
        assert a.label == b.label
        assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in a.probabilities) < 1e-4
        assert np.mean(a.mask != b.mask) < 1e-3  # only pixels at the threshold may flip


def test_backend_onnx_without_export_is_a_clear_error(tmp_path: Path, tiny_model: Path,
                                                      mat_dataset: Path) -> None:
    res = cli("predict", str(mat_dataset / "1.mat"), "--checkpoint", str(tiny_model),
              "--backend", "onnx", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert res.returncode == 2 and "model.onnx" in res.stderr and "tumorscope export" in res.stderr


def test_evaluate_errors_name_the_problem(tmp_path: Path, tiny_model: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from tumorscope.cli import main

    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope"), "--fold", "0"]) == 2
    assert "nope: checkpoint not found" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tiny_model), "--fold", "9"]) == 2
    assert "fold must be in 0..2" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tiny_model), "--fold", "2"]) == 2
    assert "used to train this model" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
