"""A user's own data: one sub-folder per class, optional masks/ mirror, patient from name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tumorscope.data import load_index
from tumorscope.data.slices import load_record
from tumorscope.errors import ScanReadError


def _folder(root: Path) -> Path:
    for cls in ("glioma", "meningioma"):
        (root / cls).mkdir(parents=True)
        (root / "masks" / cls).mkdir(parents=True)
        for patient in ("p1", "p2"):
            for k in range(2):
                name = f"{patient}_{k}.png"
                Image.fromarray(np.full((20, 24), 100, np.uint8)).save(root / cls / name)
                mask = np.zeros((20, 24), np.uint8)
                mask[5:9, 5:9] = 255
                if k == 0:  # only some images have a mask
                    Image.fromarray(mask).save(root / "masks" / cls / name)
    return root


def test_classes_patients_and_masks(tmp_path: Path) -> None:
    index = load_index("imagefolder", _folder(tmp_path))
    assert index.classes == ["glioma", "meningioma"]
    assert len(index.records) == 8
    assert index.patients == ["p1", "p2"]
    with_mask = [r for r in index.records if r.mask is not None]
    assert len(with_mask) == 4
    image, mask = load_record(with_mask[0])
    assert image.shape == (1, 20, 24) and int(mask.sum()) == 16
    _, empty = load_record(next(r for r in index.records if r.mask is None))
    assert not empty.any()


def test_patients_csv_overrides_names(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    (root / "patients.csv").write_text("file,patient\nglioma/p1_0.png,ZZ\n")
    index = load_index("imagefolder", root)
    assert next(r for r in index.records if r.id == "glioma/p1_0").patient == "ZZ"


def test_mask_of_another_size_is_named(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    bad = root / "masks" / "glioma" / "p1_0.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(bad)
    record = next(r for r in load_index("imagefolder", root).records if r.mask == bad)
    with pytest.raises(ScanReadError, match=r"p1_0\.png: mask shape \(10, 10\) differs"):
        load_record(record)


def test_empty_folder_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ScanReadError, match="no class sub-folders"):
        load_index("imagefolder", tmp_path)


def test_too_few_patients_for_the_folds_is_one_line(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from tumorscope.cli import main

    root = _folder(tmp_path / "data")  # two patients
    (tmp_path / "c.yaml").write_text(
        f"data: {{dataset: imagefolder, root: {root}, fold_source: computed, folds: 5}}\n"
        f"model: {{encoder_weights: none}}\noutput: {{root: {tmp_path / 'runs'}}}\n")
    assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(root) in err and "2 patient(s) cannot fill 5 folds" in err
    assert not (tmp_path / "runs").exists()  # nothing written
