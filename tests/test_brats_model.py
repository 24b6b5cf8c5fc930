"""The shipped BraTS model (models/brats): its card, and its held-out per-case numbers
reproduced from the shipped weights."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BRATS = REPO / "models" / "brats"
pytestmark = pytest.mark.skipif(not (BRATS / "model.json").is_file(),
                                reason="no BraTS model shipped in models/brats")


def test_card_and_weights() -> None:
    from tumorscope.checkpoint.store import load_checkpoint

    assert (BRATS / "model.safetensors").stat().st_size <= 25 * 1024 * 1024
    _, card = load_checkpoint(BRATS)  # strict: sha256, finite weights, shapes match the card
    assert card.task == "brats" and card.data.dataset == "brats"
    assert card.preprocessing["modalities"] and card.preprocessing["spacing"]
    split = card.data.split
    assert split.train and split.val and split.test and (split.test_fold, split.val_fold) == (0, 1)
    assert split.train.patients + split.val.patients + split.test.patients == 10
    assert "ten-case" in (BRATS / "README.md").read_text()


@pytest.mark.realdata
@pytest.mark.slow
def test_held_out_cases_reproduce(shared_data: Path, tmp_path: Path) -> None:
    from tumorscope.evaluation.evaluate import evaluate
    from tumorscope.evaluation.result import read_result

    committed = read_result(BRATS / "metrics-fold0.json")
    fresh = evaluate(BRATS, 0, tmp_path, data_root=str(shared_data / "brats"))
    assert fresh.cases is not None and committed.cases is not None
    assert fresh.cases.per_case.keys() == committed.cases.per_case.keys()
    for case, scores in committed.cases.per_case.items():
        for key in ("WT_dice", "TC_dice", "ET_dice", "WT_hd95"):
            assert fresh.cases.per_case[case][key] == pytest.approx(scores[key], abs=1e-6)
