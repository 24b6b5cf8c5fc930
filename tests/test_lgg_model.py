"""The shipped LGG model (models/lgg): its card, and its held-out per-patient volume Dice
reproduced from the shipped weights (the numbers docs/lgg and the card quote)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LGG = REPO / "models" / "lgg"
pytestmark = pytest.mark.skipif(not (LGG / "model.json").is_file(),
                                reason="no LGG model shipped in models/lgg")


def test_card_and_weights() -> None:
    from tumorscope.checkpoint.store import load_checkpoint

    assert (LGG / "model.safetensors").stat().st_size <= 25 * 1024 * 1024
    _, card = load_checkpoint(LGG)  # strict: sha256, finite weights, shapes match the card
    assert card.weights_dtype == "float16"
    assert card.classes == ["no tumour", "tumour"] and card.data.dataset == "lgg"
    split = card.data.split
    assert split.train and split.val and split.test and (split.test_fold, split.val_fold) == (0, 1)
    assert split.train.patients + split.val.patients + split.test.patients == 110
    readme = (LGG / "README.md").read_text()
    assert "FLAIR" in readme and "never saw FLAIR" not in readme  # FLAIR is an input channel
    docs = json.loads((REPO / "docs" / "lgg" / "metrics-fold0.json").read_text())
    shipped = json.loads((LGG / "metrics-fold0.json").read_text())
    assert docs["model_id"] == shipped["model_id"] == card.id  # docs quote this very model


@pytest.mark.realdata
@pytest.mark.slow
def test_held_out_volume_dice_reproduces(shared_data: Path, tmp_path: Path) -> None:
    """Re-evaluate fold 0 from the shipped weights: every patient's volume Dice comes out again."""
    from tumorscope.evaluation.evaluate import evaluate
    from tumorscope.evaluation.result import read_result

    committed = read_result(LGG / "metrics-fold0.json")
    fresh = evaluate(LGG, 0, tmp_path, data_root=str(shared_data / "lgg"))
    assert fresh.fold_role == "test" and fresh.volumes and committed.volumes
    assert fresh.volumes.patients == committed.volumes.patients == 22
    assert fresh.volumes.dice_mean_per_patient == pytest.approx(
        committed.volumes.dice_mean_per_patient, abs=1e-6)
    assert fresh.volumes.per_patient.keys() == committed.volumes.per_patient.keys()
    assert all(fresh.volumes.per_patient[p] == pytest.approx(v, abs=1e-6)
               for p, v in committed.volumes.per_patient.items())
