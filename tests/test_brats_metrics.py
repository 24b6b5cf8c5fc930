"""BraTS metrics against hand-computed cases, the empty-mask rules included."""

from __future__ import annotations

import numpy as np
import pytest

from tumorscope.brats_metrics import (
    WORST_HD95,
    WORST_LESION_HD95,
    case_scores,
    dice,
    hd95,
    label_scores,
    lesion_scores,
    region_scores,
    summarise,
)


def _box(shape: tuple[int, ...], *slices: slice) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[slices] = True
    return mask


def test_empty_mask_rules() -> None:
    empty, some = np.zeros((8, 8, 8), bool), _box((8, 8, 8), slice(2, 4), slice(2, 4),
                                                  slice(2, 4))
    assert dice(empty, empty) == 1.0 and hd95(empty, empty) == 0.0
    assert dice(some, empty) == 0.0 and hd95(some, empty) == WORST_HD95
    assert dice(empty, some) == 0.0 and hd95(empty, some) == WORST_HD95
    scores = region_scores(np.zeros((8, 8, 8), np.uint8), np.zeros((8, 8, 8), np.uint8),
                           (1, 1, 1))
    assert all(s == {"dice": 1.0, "hd95": 0.0, "sensitivity": 1.0, "specificity": 1.0}
               for s in scores.values())
    assert not any(np.isnan(v) for s in scores.values() for v in s.values())


def test_hd95_hand_computed_with_spacing() -> None:
    a = _box((10, 10, 10), slice(1, 2), slice(1, 2), slice(1, 2))
    b = _box((10, 10, 10), slice(4, 5), slice(1, 2), slice(1, 2))
    assert hd95(a, b, (2.0, 1.0, 1.0)) == pytest.approx(6.0)  # 3 voxels along x at 2 mm
    assert hd95(a, b, (1.0, 1.0, 1.0)) == pytest.approx(3.0)
    assert hd95(a, a) == 0.0


def test_region_scores_hand_computed() -> None:
    true = np.zeros((4, 4, 4), np.uint8)
    pred = np.zeros((4, 4, 4), np.uint8)
    true[0, 0, :2] = 3  # 2 ET voxels
    true[0, 1, :2] = 2  # 2 ED voxels
    pred[0, 0, :2] = 3
    pred[0, 1, 0] = 1  # 1 NCR where ED is
    s = region_scores(pred, true, (1, 1, 1))
    # WT: pred 3 voxels, true 4, overlap 3 -> Dice 6/7; sensitivity 3/4; specificity 60/60
    assert s["WT"]["dice"] == pytest.approx(6 / 7)
    assert s["WT"]["sensitivity"] == pytest.approx(3 / 4)
    assert s["WT"]["specificity"] == 1.0
    # TC: pred {ET 2, NCR 1} = 3, true {ET 2} = 2, overlap 2 -> 4/5; spec 61/62
    assert s["TC"]["dice"] == pytest.approx(4 / 5)
    assert s["TC"]["specificity"] == pytest.approx(61 / 62)
    assert s["ET"]["dice"] == 1.0 and s["ET"]["hd95"] == 0.0


def test_label_scores_hand_computed() -> None:
    true = np.array([2, 2, 2, 2, 3, 0, 0, 0], np.uint8)
    pred = np.array([2, 2, 2, 0, 3, 2, 1, 0], np.uint8)
    s = label_scores(pred, true)
    assert s["ED"] == pytest.approx({"precision": 3 / 4, "recall": 3 / 4, "iou": 3 / 5,
                                     "dice": 3 / 4})
    assert s["ET"] == {"precision": 1.0, "recall": 1.0, "iou": 1.0, "dice": 1.0}
    assert s["NCR"] == {"precision": 0.0, "recall": 1.0, "iou": 0.0, "dice": 0.0}


def test_lesion_wise_found_missed_and_spurious() -> None:
    shape = (40, 40, 10)
    true = _box(shape, slice(2, 6), slice(2, 6), slice(2, 6)) | \
        _box(shape, slice(30, 34), slice(30, 34), slice(2, 6))
    pred = _box(shape, slice(2, 6), slice(2, 6), slice(2, 6)) | \
        _box(shape, slice(2, 5), slice(30, 33), slice(2, 5))  # first found, one spurious
    s = lesion_scores(pred, true, (1, 1, 1), dilation=1, min_voxels=1)
    assert (s["lesions"], s["missed"], s["spurious"]) == (2, 1, 1)
    assert s["lesion_dice"] == pytest.approx((1 + 0 + 0) / 3)
    assert s["lesion_hd95"] == pytest.approx((0 + 2 * WORST_LESION_HD95) / 3)


def test_lesion_wise_groups_near_lesions_and_ignores_tiny_ones() -> None:
    shape = (30, 30, 10)
    true = _box(shape, slice(2, 6), slice(2, 6), slice(2, 6)) | \
        _box(shape, slice(8, 12), slice(2, 6), slice(2, 6))  # 2 voxels apart: one lesion
    pred = true.copy()
    pred[25, 25, 5] = True  # a 1-voxel speck, below the size threshold
    s = lesion_scores(pred, true, (1, 1, 1), dilation=3, min_voxels=8)
    assert (s["lesions"], s["missed"], s["spurious"]) == (1, 0, 0)
    assert s["lesion_dice"] == 1.0 and s["lesion_hd95"] == 0.0
    nothing = lesion_scores(np.zeros(shape, bool), np.zeros(shape, bool), (1, 1, 1))
    assert nothing["lesion_dice"] == 1.0 and nothing["lesion_hd95"] == 0.0


def test_case_scores_refuse_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="differs"):
        case_scores(np.zeros((2, 2, 2), np.uint8), np.zeros((2, 2, 3), np.uint8), (1, 1, 1))


def test_summary_over_cases() -> None:
    per_case = {f"c{i}": {"WT_dice": v} for i, v in enumerate([0.9, 0.8, 0.7, 0.6])}
    s = summarise(per_case)["WT_dice"]
    assert s["mean"] == pytest.approx(0.75) and s["median"] == pytest.approx(0.75)
    assert s["std"] == pytest.approx(np.std([0.9, 0.8, 0.7, 0.6], ddof=1))
    assert 0.6 <= s["ci_low"] < 0.75 < s["ci_high"] <= 0.9 and s["cases"] == 4
