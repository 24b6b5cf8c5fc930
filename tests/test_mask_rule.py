"""The mask rule: threshold and rescue (inference.joint.tumour_mask), their fit on validation
(evaluation.calibrate.fit_mask_rule) and how the inferer applies them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tumorscope.checkpoint.card import Calibration, ModelCard
from tumorscope.evaluation.calibrate import MASK_RESCUES, MASK_THRESHOLDS, fit_mask_rule
from tumorscope.inference.joint import JointInferer, tumour_mask


def square(size: int, lo: int, hi: int, value: float, base: float = 0.0) -> np.ndarray:
    prob = np.full((size, size), base, np.float32)
    prob[lo:hi, lo:hi] = value
    return prob


def test_threshold_then_rescue_relative_to_the_peak() -> None:
    prob = square(8, 2, 5, 0.4, base=0.1)
    assert not tumour_mask(prob, 0.5).any()
    rescued = tumour_mask(prob, 0.5, rescue=0.5)  # above 0.2: the square only
    assert rescued.sum() == 9 and rescued[2:5, 2:5].all()
    assert tumour_mask(prob, 0.3, rescue=0.5).sum() == 9  # found at the threshold: no rescue
    assert not tumour_mask(np.zeros((8, 8), np.float32), 0.5, rescue=0.5).any()
    assert not tumour_mask(prob / 100, 0.5, rescue=0.5).any()  # peak 0.004: nothing seen


def test_the_fit_lowers_the_threshold_for_an_under_confident_network() -> None:
    truth = square(16, 4, 12, 1.0).astype(bool)
    probs = [square(16, 4, 12, 0.45, base=0.05) for _ in range(3)]
    threshold, rescue, scores = fit_mask_rule(probs, [truth] * 3)
    assert threshold < 0.45 and threshold in MASK_THRESHOLDS and rescue in MASK_RESCUES
    assert scores["dice"] == 1.0 and scores["dice_at_0.5"] == 0.0 and scores["slices"] == 3


def test_the_fit_keeps_the_plain_rule_when_nothing_beats_it() -> None:
    truth = square(16, 4, 12, 1.0).astype(bool)
    probs = [square(16, 4, 12, 0.9, base=0.35)]  # a lower threshold would take everything
    threshold, rescue, scores = fit_mask_rule(probs, [truth])
    assert (threshold, rescue) == (0.5, None) and scores["dice"] == scores["dice_at_0.5"] == 1


def test_the_fit_rescues_faint_tumours_it_cannot_reach_by_threshold() -> None:
    truth = square(16, 4, 12, 1.0).astype(bool)
    faint = square(16, 4, 12, 0.2, base=0.01)  # below every threshold of the grid
    _, rescue, scores = fit_mask_rule([faint], [truth])
    assert rescue is not None and scores["dice"] == 1.0 > scores["dice_at_0.5"]
    # scored as deployed: a slice the classifier missed gets no mask, rescue or not
    _, _, missed = fit_mask_rule([faint], [truth], found=[False])
    assert missed["dice"] == missed["dice_at_0.5"] == 0.0
    # a model that always names a tumour gets no rescue (it would outline every input)
    _, rescue, _ = fit_mask_rule([faint], [truth], rescues=(None,))
    assert rescue is None


class FixedRunner:
    """Stands in for the network: one faint square and the given class logits."""

    name, outputs = "fixed", ("mask_logits", "class_logits")

    def __init__(self, class_logits: list[float]) -> None:
        self.class_logits = np.array(class_logits, np.float32)

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        prob = square(batch.shape[-1], 2, 6, 0.3, base=0.01)
        logits = np.log(prob / (1 - prob))
        return {"mask_logits": np.repeat(logits[None, None], len(batch), axis=0),
                "class_logits": np.repeat(self.class_logits[None], len(batch), axis=0)}


def card(calibration: Calibration | None) -> ModelCard:
    return ModelCard(task="joint", classes=["glioma", "no tumour"], model={},
                     preprocessing={"input_size": 8, "in_channels": 1},
                     calibration=calibration)


RULE = Calibration(fitted_on="validation", no_tumour_class="no tumour", tumour_threshold=0.5,
                   mask_threshold=0.5, mask_rescue=0.5)


@pytest.mark.parametrize(("calibration", "logits", "threshold", "pixels"), [
    (RULE, [4.0, -4.0], None, 16),        # tumour found, nothing above 0.5: rescued
    (RULE, [-4.0, 4.0], None, 0),         # no tumour found: no rescue
    (RULE, [4.0, -4.0], 0.005, 64),       # an explicit threshold wins over the card's
    (RULE.model_copy(update={"mask_threshold": 0.2, "mask_rescue": None}), [4.0, -4.0],
     None, 16),                           # the card's threshold
    (None, [4.0, -4.0], None, 0),         # uncalibrated: 0.5, no rescue
])
def test_the_inferer_applies_the_cards_rule(calibration: Calibration | None,
                                            logits: list[float], threshold: float | None,
                                            pixels: int) -> None:
    inferer = JointInferer(FixedRunner(logits), card(calibration), threshold)
    image = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    (out,) = inferer.predict_batch([image])
    assert int(out.mask.sum()) == pixels


def test_a_volume_gets_the_rescue_slice_by_slice() -> None:
    from tumorscope.io import Scan

    inferer = JointInferer(FixedRunner([4.0, -4.0]), card(RULE))
    volume = np.random.default_rng(0).random((1, 8, 8, 3)).astype(np.float32)
    pred = inferer.predict_scan(Scan(volume, None, Path("case.nii.gz"), "nifti", ("t1",)))
    assert pred.mask.shape == (8, 8, 3) and int(pred.mask.sum()) == 3 * 16
    assert pred.extra["slices_with_tumour"] == 3
