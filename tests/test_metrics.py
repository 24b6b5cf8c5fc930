"""Metrics against hand-computed cases (and scikit-learn as a cross-check)."""

from __future__ import annotations

import numpy as np
import pytest

from tumorscope.metrics import (
    bootstrap_ci,
    classification_metrics,
    confusion_matrix,
    dice_iou,
    segmentation_metrics,
)


def test_confusion_and_per_class_by_hand() -> None:
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    m = classification_metrics(cm, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # class a: P=2/2, R=2/3 -> F1=0.8 ; b: P=1/2, R=1/2 -> 0.5 ; c: P=1/2, R=1 -> 2/3
    assert m["per_class"]["a"]["f1"] == pytest.approx(0.8)
    assert m["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["recall"] == pytest.approx(1.0)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_class_never_predicted_has_zero_precision() -> None:
    m = classification_metrics(confusion_matrix([0, 1], [0, 0], 2), ["a", "b"])
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_matches_sklearn_on_random_labels() -> None:
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(1)
    t, p = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    m = classification_metrics(confusion_matrix(t, p, 3), ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(accuracy_score(t, p))
    assert m["macro_f1"] == pytest.approx(f1_score(t, p, average="macro"))


def test_dice_iou_by_hand() -> None:
    pred = np.zeros((4, 4), bool)
    true = np.zeros((4, 4), bool)
    pred[0, :3] = True  # 3 px
    true[0, 1:] = True  # 3 px, overlap 2
    dice, iou = dice_iou(pred, true)
    assert dice == pytest.approx(2 * 2 / 6)
    assert iou == pytest.approx(2 / 4)


def test_empty_masks() -> None:
    empty = np.zeros((3, 3), bool)
    full = np.ones((3, 3), bool)
    assert dice_iou(empty, empty) == (1.0, 1.0)
    assert dice_iou(full, empty) == (0.0, 0.0)
    assert dice_iou(empty, full) == (0.0, 0.0)


def test_segmentation_summary_mean_vs_pooled() -> None:
    a_true = np.zeros((4, 4), bool)
    a_true[:2] = True  # 8 px
    a_pred = a_true.copy()  # perfect
    b_true = np.zeros((4, 4), bool)
    b_true[0, 0] = True  # 1 px
    b_pred = np.zeros((4, 4), bool)  # missed
    c = np.zeros((4, 4), bool)  # no tumour, none predicted
    s = segmentation_metrics([a_pred, b_pred, c], [a_true, b_true, c])
    assert s["dice_mean"] == pytest.approx((1 + 0 + 1) / 3)
    assert s["dice_mean_tumour"] == pytest.approx(0.5)
    assert s["dice_pooled"] == pytest.approx(2 * 8 / (8 + 9))
    assert s["iou_pooled"] == pytest.approx(8 / 9)
    assert s["tumour_images"] == 2


def test_bootstrap_ci_brackets_the_mean_and_groups() -> None:
    values = np.array([0.0] * 50 + [1.0] * 50)
    lo, hi = bootstrap_ci(values, np.mean, 300, seed=0)
    assert lo < 0.5 < hi and hi - lo < 0.35
    # one patient holds all ones: grouped resampling gives a much wider interval
    groups = np.array([0] * 50 + list(range(1, 51)))
    values2 = np.array([1.0] * 50 + [0.0] * 50)
    glo, ghi = bootstrap_ci(values2, np.mean, 300, seed=0, groups=groups)
    assert ghi - glo > hi - lo


def test_volume_dice_pools_slices_per_patient() -> None:
    from tumorscope.metrics import volume_dice

    z = np.zeros((2, 2), bool)
    one = z.copy()
    one[0, 0] = True
    two = z.copy()
    two[0, :] = True
    # patient A: slice 1 perfect (1 px), slice 2 predicted 2 px where truth has 1 px overlap
    # -> inter 1 + 1 = 2, total 2 + 3 = 5 -> Dice 0.8 ; patient B: empty/empty -> 1.0
    d = volume_dice(["A", "A", "B"], [one, two, z], [one, one, z])
    assert d == {"A": pytest.approx(0.8), "B": 1.0}


def test_detection_rates_by_hand() -> None:
    from tumorscope.metrics import detection_rates

    on, off = np.ones((2, 2), bool), np.zeros((2, 2), bool)
    r = detection_rates([on, on, off, off, on], [on, off, off, on, on])
    assert (r["tp"], r["fp"], r["tn"], r["fn"]) == (2, 1, 1, 1)
    assert r["sensitivity"] == pytest.approx(2 / 3) and r["specificity"] == pytest.approx(0.5)


def test_json_files_never_hold_nan_or_infinity(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from tumorscope.evaluation.result import EvaluationResult, read_result
    from tumorscope.io.writers import write_json

    write_json(tmp_path / "x.json", {"a": float("nan"), "b": [np.float32("inf"), 1.5]})
    text = (tmp_path / "x.json").read_text()
    assert json.loads(text) == {"a": None, "b": [None, 1.5]}  # strict JSON, parses anywhere
    result = EvaluationResult.model_validate({
        "checkpoint": "m", "fold": 0, "dataset": "d",
        "split": {"test_fold": 0, "slices": 1, "patients": 1},
        "confidence_intervals_95": {"dice_mean_tumour": (float("nan"), float("nan"))}})
    result.save(tmp_path / "metrics.json")
    assert "NaN" not in (tmp_path / "metrics.json").read_text()
    again = read_result(tmp_path / "metrics.json")  # null reads back as "undefined" (NaN)
    assert all(np.isnan(v) for v in again.confidence_intervals_95["dice_mean_tumour"])
