"""`tumorscope realism`: a tiny pix2pix set and an untrained classifier give finite Fréchet
distances, real-vs-real below real-vs-shuffled, and one-line errors for bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fixtures import save_random_brats_model, save_random_classifier, write_config
from tumorscope.cli import main
from tumorscope.experiments.realism import BASELINES, perturbed

CLASSES = ("meningioma", "glioma", "pituitary")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def inputs(mat_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A config on the tiny figshare set, a synthetic set drawn from its training fold and an
    untrained classifier of the same classes."""
    tmp = tmp_path_factory.mktemp("realism")
    config = write_config(tmp, mat_dataset)
    synthetic = tmp / "synthetic"
    assert main(["synthesize", "--config", str(config), "--train-steps", "2", "--size", "32",
                 "--n", "12", "--width", "8", "--batch-size", "2", "--out", str(synthetic)]) == 0
    model = save_random_classifier(tmp / "model", CLASSES, input_size=32)
    return {"config": config, "synthetic": synthetic, "model": model}


def _run(inputs: dict[str, Path], out: Path, *extra: str, **paths: Path) -> int:
    given = {**inputs, **paths}
    return main(["realism", "--checkpoint", str(given["model"]), "--synthetic",
                 str(given["synthetic"]), "--config", str(given["config"]), "--out", str(out),
                 *extra])


def test_realism_writes_finite_distances_with_a_scale(inputs: dict[str, Path],
                                                      tmp_path: Path) -> None:
    assert _run(inputs, tmp_path, "--limit", "12") == 0
    report = json.loads((tmp_path / "realism.json").read_text())
    fd = report["frechet_vs_held_out"]
    assert set(fd) == {"real_train", "synthetic", *BASELINES}
    assert all(np.isfinite(v) and v >= 0 for v in fd.values())
    assert fd["real_train"] < fd["shuffled"]
    assert report["slices"] == {"held_out": 12, "real_train": 12, "synthetic": 12}
    assert report["classes"] == list(CLASSES) and report["test_fold"] == 0
    assert set(report["per_class"]) == set(CLASSES)
    assert all(v is not None and np.isfinite(v) for c in report["per_class"].values()
               for v in c.values())
    assert {n["synthetic"][:4] for n in report["nearest"]} == {"syn-"}
    assert (tmp_path / "realism.png").read_bytes()[:4] == b"\x89PNG"


def test_perturbations_keep_shape_and_range() -> None:
    images = np.random.default_rng(0).random((3, 1, 16, 16)).astype(np.float32)
    rng = np.random.default_rng(1)
    for how in BASELINES:
        out = perturbed(images, how, rng)
        assert out.shape == images.shape and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 1 and not np.array_equal(out, images)
    shuffled = perturbed(images, "shuffled", rng)
    assert np.array_equal(np.sort(shuffled.ravel()), np.sort(images.ravel()))  # same pixels
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturbed(images, "rotated", rng)


def _leaky(inputs: dict[str, Path], tmp: Path) -> Path:
    """A copy of the synthetic set whose generator claims every patient."""
    leaky = Path(shutil.copytree(inputs["synthetic"], tmp / "leaky"))
    (leaky / "patients.json").write_text(json.dumps(
        {"generator": [f"P{p:03d}" for p in range(9)], "conditioning": []}))
    return leaky


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "synthetic set folder not found"),
    ("brats", "2D slice models only"),
    ("classes", "differ from the model's"),
    ("leak", "leakage"),
    ("limit", "--limit: 1"),
])
def test_bad_input_is_one_line(case: str, message: str, inputs: dict[str, Path], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    paths: dict[str, Path] = {}
    extra: list[str] = []
    if case == "missing":
        paths["synthetic"] = tmp_path / "nope"
    elif case == "brats":
        paths["model"] = save_random_brats_model(tmp_path / "brats")
    elif case == "classes":
        paths["model"] = save_random_classifier(tmp_path / "binary", input_size=32)
    elif case == "leak":
        paths["synthetic"] = _leaky(inputs, tmp_path)
    else:
        extra = ["--limit", "1"]
    assert _run(inputs, tmp_path / "out", *extra, **paths) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tumorscope realism: error: "), lines
    assert message in lines[0]
    assert not (tmp_path / "out" / "realism.json").exists()
