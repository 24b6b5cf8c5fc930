"""Our BraTS region metrics against the official BraTS evaluation (brats-evaluation, on
panoptica), on generated cases. An optional extra: `make brats-eval` installs it."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fixtures import brats_labels
from tumorscope.brats_metrics import region_scores

official = pytest.importorskip("brats_evaluation", reason="the official BraTS evaluation is "
                               "an optional extra (its pins conflict with ours): run "
                               "`make brats-eval` to install it")


@pytest.mark.parametrize(("shift", "spacing"), [((2, 0, 0), (1.0, 1.0, 1.0)),
                                                ((0, -3, 1), (1.0, 1.0, 1.0)),
                                                ((1, 1, 0), (0.8, 1.2, 2.0))])
def test_dice_and_hd95_match_the_official_evaluation(tmp_path: Path, shift: tuple[int, ...],
                                                     spacing: tuple[float, ...]) -> None:
    from panoptica import Panoptica_Evaluator

    reference = brats_labels((40, 36, 30))
    prediction = np.roll(reference, shift, axis=(0, 1, 2))
    prediction[prediction == 1] = np.where(np.arange(prediction.size).reshape(
        prediction.shape)[prediction == 1] % 7 == 0, 3, 1)  # some core called enhancing
    affine = np.diag([*spacing, 1.0])
    for name, labels in (("ref", reference), ("pred", prediction)):
        nib.save(nib.Nifti1Image(labels, affine), str(tmp_path / f"{name}.nii.gz"))
    evaluator = Panoptica_Evaluator.load_from_config(official.config_path("gli"))
    theirs = official.evaluate_single_exam(str(tmp_path / "pred.nii.gz"),
                                           str(tmp_path / "ref.nii.gz"), "case", evaluator)
    assert "error" not in theirs, theirs
    ours = region_scores(prediction, reference, spacing)
    # the official evaluation measures HD95 in voxels (BraTS volumes are 1 mm isotropic);
    # ours is in millimetres, so on anisotropic grids compare it in voxel units
    in_voxels = region_scores(prediction, reference, (1.0, 1.0, 1.0))
    for region in ("WT", "TC", "ET"):
        result = theirs[region.lower()]
        assert ours[region]["dice"] == pytest.approx(result["global_bin_dsc"], abs=1e-9)
        assert in_voxels[region]["hd95"] == pytest.approx(result["global_bin_hd95"], abs=1e-4)
    if spacing != (1.0, 1.0, 1.0):
        assert any(ours[r]["hd95"] != in_voxels[r]["hd95"] for r in ours)  # mm differ
