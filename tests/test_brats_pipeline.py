"""BraTS end to end on generated cases: prepare the cache (resumable), train a tiny 2D and a
3D model, resume, evaluate the BraTS way, and write segmentations in the input's space."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from fixtures import write_brats_case
from tumorscope.config import load_config
from tumorscope.data.brats import build_cache, load_brats, read_cached
from tumorscope.errors import ConfigError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def brats_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("brats")
    for k in range(4):
        naming = "brats2023" if k == 3 else "brats2021"
        write_brats_case(root / f"case{k}", f"Case{k}", naming, spacing=(1.0, 1.0, 1.5))
    write_brats_case(root / "unlabelled", "Case9", skip=("seg",))
    return root


def _config(tmp: Path, root: Path, family: str) -> Path:
    model = {"family": family, "arch": "unet" if family == "2d" else "segresnet",
             "encoder": "resnet18", "encoder_weights": None, "filters": 8,
             "patch_size": [32, 32] if family == "2d" else [16, 16, 16]}
    cfg = {"task": "brats", "name": f"tiny-{family}", "seed": 1,
           "data": {"dataset": "brats", "root": str(root), "folds": 4, "test_fold": 0,
                    "val_fold": 1, "fold_source": "computed"},
           "model": model, "prep": {"spacing": None, "samples_per_case": 2, "patch_stride": 16},
           "augment": {"enabled": True, "affine": 0.5, "elastic": 0.0},
           "optim": {"lr": 0.01}, "ema": {"enabled": True, "decay": 0.9},
           "output": {"root": str(tmp / "runs")},
           "trainer": {"epochs": 2, "batch_size": 2, "accelerator": "cpu",
                       "checkpoint_every_n_steps": 1, "log_every_n_steps": 1}}
    path = tmp / f"{family}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_index_skips_unlabelled_cases(brats_root: Path) -> None:
    index = load_brats(brats_root)
    assert [r.id for r in index.records] == ["Case0", "Case1", "Case2", "Case3"]
    assert index.info["unlabelled"] == ["Case9"]


def test_cache_is_resumable_and_tied_to_its_settings(brats_root: Path, tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, brats_root, "2d"))
    records = load_brats(brats_root).records
    folder = build_cache(cfg, records[:2], progress=False)  # "interrupted" after two cases
    first = (folder / "Case0.h5").stat().st_mtime_ns
    build_cache(cfg, records, progress=False)
    assert (folder / "Case0.h5").stat().st_mtime_ns == first  # not redone
    cached = read_cached(folder / "Case3.h5")
    assert cached.image.shape[0] == 4 and cached.patches.shape[1] == 3
    assert all(cached.labels[:, :, z].any() for z, _, _ in cached.patches[:3]) or \
        len(cached.patches) > 0
    other = load_config(_config(tmp_path, brats_root, "2d"), ["prep.margin=5"])
    with pytest.raises(ConfigError, match="other settings"):
        build_cache(other, records, progress=False)


@pytest.mark.parametrize("family", ["3d", "2d"])
def test_train_resume_evaluate(brats_root: Path, tmp_path: Path, family: str) -> None:
    from tumorscope.evaluation.evaluate import evaluate
    from tumorscope.inference.brats import BratsInferer
    from tumorscope.inference.predictor import Predictor
    from tumorscope.io.brats import read_case, write_segmentation
    from tumorscope.training.run import train

    cfg = load_config(_config(tmp_path, brats_root, family), ["trainer.epochs=1"])
    train(cfg)
    more = load_config(_config(tmp_path, brats_root, family))  # 2 epochs: continue the run
    model = train(more, resume=True)
    card = (model / "model.json").read_text()
    assert '"modalities"' in card and '"task": "brats"' in card
    result = evaluate(model, 0, tmp_path / "eval")
    assert result.cases is not None and result.fold_role == "test"
    (case_id, scores), = result.cases.per_case.items()
    assert {"WT_dice", "TC_hd95", "ET_lesion_dice", "NCR_precision", "ED_iou"} <= set(scores)
    assert all(np.isfinite(v) for v in scores.values())
    assert (tmp_path / "eval" / "cases.csv").read_text().startswith("case,")
    report = (tmp_path / "eval" / "report.html").read_text()
    assert "Views through the tumour" in report and f"<td>{case_id}</td>" in report
    written = nib.load(str(tmp_path / "eval" / "predictions" / f"{case_id}_pred.nii.gz"))
    case = read_case(brats_root / f"case{case_id[-1]}")
    assert written.shape == case.shape and np.allclose(written.affine, case.affine)
    predictor = Predictor.from_checkpoint(model)
    assert isinstance(predictor.inferer, BratsInferer)
    pred = predictor.inferer.predict_case(case)
    assert pred.labels.shape == case.shape and set(pred.volumes_cm3) == {"WT", "TC", "ET"}
    write_segmentation(pred.labels, case, tmp_path / "p.nii.gz")
    from tumorscope.inference.onnx_export import export_checkpoint_onnx

    export_checkpoint_onnx(model)  # dynamic spatial axes: whole slices and windows fit
    onnx = Predictor.from_checkpoint(model, backend="onnx")
    assert onnx.backend == "onnx"
    agree = (onnx.inferer.predict_case(case).labels == pred.labels).mean()  # type: ignore[attr-defined]
    assert agree > 0.999
    from fixtures import cli

    res = cli("card", "--checkpoint", str(model), "--metrics", str(tmp_path / "eval"),
              "--command", "tumorscope train ...", "--out", str(tmp_path / "card.md"),
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "card.md").read_text()
    assert "ten-case" in text and f"| {case_id} |" in text and "HD95" in text
    # a cross-validation folder's table appended (here: one fold of two finished)
    cv_dir = tmp_path / "cv"
    (cv_dir / "fold-0").mkdir(parents=True)
    metrics = tmp_path / "eval" / "metrics.json"
    (cv_dir / "fold-0" / "metrics.json").write_bytes(metrics.read_bytes())
    argv = ["card", "--checkpoint", str(model), "--metrics", str(metrics), "--out",
            str(tmp_path / "cv-card.md"), "--cv", str(cv_dir)]
    res = cli(*argv, cwd=tmp_path)
    assert res.returncode == 2 and "not a `tumorscope cv` output folder" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "cv-card.md").exists()
    (cv_dir / "cv.json").write_text('{"folds": 2}')
    res = cli(*argv, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "cv-card.md").read_text()
    assert "## 2-fold cross-validation (1 folds finished)" in text
    assert f"| {case_id} | 0 | " in text.split("cross-validation")[-1]
    assert not (cv_dir / "summary.json").exists()  # the card only reads the folder


@pytest.mark.realdata
def test_smoke_on_the_shared_brats_cases(shared_data: Path, tmp_path: Path) -> None:
    """Prepare, train a few steps, evaluate the held-out cases and predict the unlabelled
    2023-named case: the real files go through every stage."""
    from fixtures import cli

    overrides = [f"data.root={shared_data / 'brats'}", f"output.root={tmp_path / 'runs'}",
                 "model.filters=8", "model.patch_size=[32,32,32]", "trainer.epochs=1",
                 "trainer.limit_train_batches=2", "trainer.limit_val_batches=2",
                 "output.run_name=smoke"]
    res = cli("prepare", "--config", "configs/brats/segresnet-3d.yaml", *overrides,
              cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr[-2000:]
    assert "left out, no segmentation: BraTS-GLI-00001-000" in res.stdout
    again = cli("prepare", "--config", "configs/brats/segresnet-3d.yaml", *overrides,
                cwd=Path(__file__).resolve().parents[1])
    assert again.returncode == 0 and "is complete (" in again.stdout, again.stdout
    res = cli("train", "--config", "configs/brats/segresnet-3d.yaml", *overrides,
              cwd=Path(__file__).resolve().parents[1], timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    model = tmp_path / "runs" / "smoke" / "model"
    res = cli("evaluate", "--checkpoint", str(model), "--out", str(tmp_path / "eval"),
              "--data-root", str(shared_data / "brats"), cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    res = cli("predict", str(shared_data / "brats" / "BraTS-GLI-00001-000"), "--checkpoint",
              str(model), "--out", str(tmp_path / "pred"), cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    seg = nib.load(str(tmp_path / "pred" / "BraTS-GLI-00001-000_seg.nii.gz"))
    source = nib.load(str(shared_data / "brats" / "BraTS-GLI-00001-000" /
                          "BraTS-GLI-00001-000-t1c.nii.gz"))
    assert seg.shape == source.shape and np.allclose(seg.affine, source.affine)
    assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1, 2, 3}  # 2023 convention
    assert (tmp_path / "pred" / "BraTS-GLI-00001-000_views.png").is_file()


def test_predict_cli_cases_and_refusals(brats_root: Path, tmp_path: Path) -> None:
    from fixtures import cli, save_random_model
    from tumorscope.training.run import train

    model = train(load_config(_config(tmp_path, brats_root, "3d"), ["trainer.epochs=1"]))
    folder = brats_root / "case3"
    files = [f"--{m}={folder / f'Case3-{s}.nii.gz'}" for m, s in
             (("t1", "t1n"), ("t1ce", "t1c"), ("t2", "t2w"), ("flair", "t2f"))]
    res = cli("predict", str(brats_root / "case0"), *files, "--checkpoint", str(model),
              "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert {p.name for p in (tmp_path / "out").glob("*_seg.nii.gz")} == \
        {"Case0_seg.nii.gz", "Case3_seg.nii.gz"}
    assert "WT cm³" in res.stdout
    slice_model = save_random_model(tmp_path / "slice-model")
    res = cli("predict", str(folder), "--checkpoint", str(slice_model), "--out",
              str(tmp_path / "o2"), cwd=tmp_path)
    assert res.returncode == 2 and "takes single scans" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "o2").exists()
    res = cli("predict", str(folder / "Case3-t2f.nii.gz"), "--checkpoint", str(slice_model),
              "--out", str(tmp_path / "o5"), cwd=tmp_path)  # one modality, slice model
    assert res.returncode == 2 and "flair volume of a BraTS case" in res.stderr
    res = cli("predict", str(tmp_path / "nowhere"), "--checkpoint", str(model), "--out",
              str(tmp_path / "o3"), cwd=tmp_path)
    assert res.returncode == 2 and "not a folder" in res.stderr
    res = cli("predict", str(brats_root / "case0" / "Case0_t1.nii.gz"), "--checkpoint",
              str(model), "--out", str(tmp_path / "o4"), cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1


def test_augment_preview_of_a_case(brats_root: Path, tmp_path: Path) -> None:
    from PIL import Image

    from tumorscope.augment_preview import preview_grid
    from tumorscope.data.brats import preprocessing
    from tumorscope.io.brats import read_case

    cfg = load_config(_config(tmp_path, brats_root, "3d"), ["augment.ghosting=0.5"])
    out = preview_grid(cfg, tmp_path / "preview.png", variants=2)
    rows = 7  # flip, affine, ghosting, bias field, gamma, noise, then all together
    case = read_case(brats_root / "case0")
    x, y, _ = preprocessing(cfg)(case.image, case.spacing)[1].grid
    assert Image.open(out).size == (3 * (x + 4), rows * (y + 4))  # original + 2 variants


def test_resume_mid_epoch_is_exact(brats_root: Path, tmp_path: Path) -> None:
    """Killed in the middle of an epoch and resumed: bit-identical to an uninterrupted run
    (crops, TorchIO augmentation and dropout all replay)."""
    import lightning as L
    import torch

    from tumorscope.training import ckpt_io
    from tumorscope.training.run import train

    class Stop(Exception):
        pass

    class StopAt(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
            if trainer.global_step == 3:
                raise Stop

    base = _config(tmp_path, brats_root, "3d")
    extra = ["model.dropout=0.2", "augment.noise=0.5", "augment.gamma=0.5"]
    straight = load_config(base, ["output.run_name=straight", *extra])
    train(straight)
    killed = load_config(base, ["output.run_name=killed", *extra])
    with pytest.raises(Stop):
        train(killed, callbacks=[StopAt()])
    train(killed, resume=True)

    def weights(cfg: object) -> dict[str, torch.Tensor]:
        path = cfg.run_dir / "checkpoints" / "last.ckpt"  # type: ignore[attr-defined]
        return ckpt_io.load_training_checkpoint(path)["state_dict"]

    a, b = weights(straight), weights(killed)
    assert not [k for k in a if not torch.equal(a[k], b[k])]


def test_ddp_two_processes_on_cpu(brats_root: Path, tmp_path: Path) -> None:
    from fixtures import cli

    res = cli("train", "--config", str(_config(tmp_path, brats_root, "3d")), "--devices", "2",
              "--strategy", "ddp", "trainer.epochs=1", "output.run_name=ddp", cwd=tmp_path,
              timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (tmp_path / "runs" / "ddp" / "model" / "model.safetensors").is_file()
