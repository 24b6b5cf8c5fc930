"""The shipped capsule classifier (models/capsule, on the EfficientNet-Lite0 front end): its
card, and its held-out fold-0 answers reproduced from the shipped weights (the numbers
docs/classifiers.md and the card quote)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CAPSULE = REPO / "models" / "capsule"
pytestmark = pytest.mark.skipif(not (CAPSULE / "model.json").is_file(),
                                reason="no capsule model shipped in models/capsule")


def test_card_and_weights() -> None:
    from tumorscope.checkpoint.store import load_checkpoint
    from tumorscope.evaluation.result import read_result
    from tumorscope.models.capsule import CapsuleNet, count_parameters

    assert (CAPSULE / "model.safetensors").stat().st_size <= 25 * 1024 * 1024
    model, card = load_checkpoint(CAPSULE)  # strict: sha256, finite weights, shapes match
    assert isinstance(model, CapsuleNet) and count_parameters(model) < 4_000_000
    assert card.model["front_end"] == "tf_efficientnet_lite0"
    assert card.classes == ["meningioma", "glioma", "pituitary"] and card.data.dataset == "figshare"
    split = card.data.split
    assert split.train and split.val and split.test and (split.test_fold, split.val_fold) == (0, 1)
    assert split.train.patients + split.val.patients + split.test.patients == 233
    committed = read_result(CAPSULE / "metrics-fold0.json")
    assert committed.model_id == card.id and committed.fold_role == "test"
    readme = (CAPSULE / "README.md").read_text()
    assert card.id in readme and "7-fold cross-validation" in readme


@pytest.mark.realdata
def test_held_out_answers_reproduce(shared_data: Path, tmp_path: Path) -> None:
    """Re-evaluate fold 0 from the shipped weights: every slice gets the same answer again."""
    from tumorscope.evaluation.evaluate import evaluate
    from tumorscope.evaluation.result import read_result

    committed = read_result(CAPSULE / "metrics-fold0.json")
    fresh = evaluate(CAPSULE, 0, tmp_path, data_root=str(shared_data / "figshare"))
    assert fresh.fold_role == "test" and len(fresh.per_image) == len(committed.per_image) == 542
    answers = {r.id: r.predicted for r in committed.per_image}
    assert {r.id: r.predicted for r in fresh.per_image} == answers
    assert fresh.classification and committed.classification
    assert fresh.classification.accuracy == pytest.approx(committed.classification.accuracy,
                                                          abs=1e-9)
