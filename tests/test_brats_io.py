"""Reading BraTS cases in both namings, their checks, and writing a segmentation back into
the input's space and label convention."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fixtures import brats_labels, write_brats_case
from tumorscope.errors import ScanReadError
from tumorscope.io.brats import (
    MODALITIES,
    NAMINGS,
    labels_from_regions,
    map_labels,
    read_case,
    regions,
    write_segmentation,
)


@pytest.mark.parametrize("naming", ["brats2021", "brats2023"])
def test_both_namings_read_the_same_case(tmp_path: Path, naming: str) -> None:
    case = read_case(write_brats_case(tmp_path / "c", "Case_7", naming))
    assert case.case_id == "Case_7" and case.naming.name == naming
    assert case.modalities == MODALITIES and case.image.shape == (4, 24, 20, 16)
    healthy = (brats_labels() == 0) & (case.image[0] != 0)
    means = [float(case.image[k][healthy].mean()) for k in range(4)]
    assert means == pytest.approx([100, 110, 120, 130], abs=1)  # t1, t1ce, t2, flair order
    assert case.labels is not None
    assert np.array_equal(case.labels, brats_labels())  # 4 (2021) and 3 (2023) -> ET = 3


def test_files_given_explicitly(tmp_path: Path) -> None:
    folder = write_brats_case(tmp_path / "c", "P9", "brats2023")
    files = {m: folder / f"P9-{s}.nii.gz" for m, s in
             {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}.items()}
    case = read_case(files, seg=folder / "P9-seg.nii.gz")
    assert case.case_id == "P9" and case.naming.name == "brats2023"
    assert np.array_equal(case.labels, brats_labels())


def test_missing_modality_names_the_case_and_file(tmp_path: Path) -> None:
    folder = write_brats_case(tmp_path / "c", "P1", skip=("t2",))
    with pytest.raises(ScanReadError, match=r"case P1: missing modality t2 \(expected "
                       r"P1_t2.nii.gz\)"):
        read_case(folder)
    case = read_case(folder, missing="zeros")  # the documented fallback
    assert case.filled == ("t2",) and not case.image[2].any() and case.image[3].any()


def test_modalities_that_disagree(tmp_path: Path) -> None:
    folder = write_brats_case(tmp_path / "c", "P2")
    flair = folder / "P2_flair.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((24, 20, 15), np.int16), np.eye(4)), str(flair))
    with pytest.raises(ScanReadError, match=r"P2_flair.nii.gz: case P2: shape \(24, 20, 15\) "
                       "differs"):
        read_case(folder)
    nib.save(nib.Nifti1Image(np.zeros((24, 20, 16), np.int16), np.diag([1, 1, 2, 1.0])),
             str(flair))
    with pytest.raises(ScanReadError, match=r"P2_flair\.nii\.gz: case P2: its affine"):
        read_case(folder)


def test_labels_outside_the_convention(tmp_path: Path) -> None:
    labels = brats_labels()
    folder = write_brats_case(tmp_path / "c", "P3", "brats2023")
    bad = labels.copy()
    bad[0, 0, 0] = 4  # 4 is not a 2023 label
    nib.save(nib.Nifti1Image(bad, np.eye(4)), str(folder / "P3-seg.nii.gz"))
    with pytest.raises(ScanReadError, match=r"P3-seg.nii.gz: labels \[4\] outside the "
                       "brats2023 convention"):
        read_case(folder)
    case = read_case(folder, label_map={0: 0, 1: 1, 2: 2, 3: 3, 4: 3})  # configurable
    assert case.labels is not None and case.labels[0, 0, 0] == 3


def test_label_mapping_both_ways() -> None:
    internal = np.array([0, 1, 2, 3, 3, 0], np.uint8)
    for naming, file_values in (("brats2021", [0, 1, 2, 4, 4, 0]),
                                ("brats2023", [0, 1, 2, 3, 3, 0])):
        n = NAMINGS[naming]
        assert n.to_file_labels(internal).tolist() == file_values
        assert map_labels(np.array(file_values), n.labels, "seg", n).tolist() == \
            internal.tolist()


def test_regions_and_back() -> None:
    labels = brats_labels()
    r = regions(labels)
    assert r["ET"].sum() < r["TC"].sum() < r["WT"].sum()
    assert np.array_equal(labels_from_regions(r["WT"], r["TC"], r["ET"]), labels)


@pytest.mark.parametrize("naming", ["brats2021", "brats2023"])
def test_segmentation_lands_in_the_input_space(tmp_path: Path, naming: str) -> None:
    """Anisotropic spacing and a flipped, oblique affine: the written file has the input's
    shape, affine, zooms and label values."""
    theta = np.deg2rad(12)
    rotation = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0],
                         [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-0.9, 1.1, 3.0])  # x flipped, anisotropic, oblique
    affine[:3, 3] = [120.0, -30.0, 12.5]
    folder = write_brats_case(tmp_path / "c", "P4", naming, affine=affine)
    case = read_case(folder)
    out = write_segmentation(case.labels, case, tmp_path / "pred.nii.gz")
    img = nib.load(str(out))
    source = nib.load(str(case.files["seg"]))
    assert img.shape == source.shape
    assert np.allclose(img.affine, source.affine, atol=1e-5)
    assert np.allclose(img.header.get_zooms(), source.header.get_zooms(), atol=1e-5)
    assert np.array_equal(np.asarray(img.dataobj), np.asarray(source.dataobj))
