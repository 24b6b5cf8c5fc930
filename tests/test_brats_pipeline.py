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
    written = nib.load(str(tmp_path / "eval" / "predictions" / f"{case_id}_pred.nii.gz"))
    case = read_case(brats_root / f"case{case_id[-1]}")
    assert written.shape == case.shape and np.allclose(written.affine, case.affine)
    predictor = Predictor.from_checkpoint(model)
    assert isinstance(predictor.inferer, BratsInferer)
    pred = predictor.inferer.predict_case(case)
    assert pred.labels.shape == case.shape and set(pred.volumes_cm3) == {"WT", "TC", "ET"}
    write_segmentation(pred.labels, case, tmp_path / "p.nii.gz")
