"""The shipped default model: its card, its reproducible held-out metrics, the demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "models" / "default"
pytestmark = pytest.mark.skipif(not (DEFAULT / "model.json").is_file(),
                                reason="no default model shipped in models/default")


def test_card_and_weights() -> None:
    from tumorscope.checkpoint.store import load_checkpoint

    size = (DEFAULT / "model.safetensors").stat().st_size
    assert size <= 25 * 1024 * 1024
    _, card = load_checkpoint(DEFAULT)  # loads strictly: weights match the card
    assert card.classes == ["meningioma", "glioma", "pituitary"]
    split = card.data.split
    assert split.train and split.val and split.test
    assert (split.test_fold, split.val_fold) == (0, 1)
    assert split.train.patients + split.val.patients + split.test.patients == 233
    assert "not a medical device" in card.intended_use.lower()
    assert (DEFAULT / "README.md").is_file()


@pytest.mark.realdata
@pytest.mark.slow
def test_held_out_metrics_reproduce(shared_data: Path, tmp_path: Path) -> None:
    """Re-evaluate on fold 0: the committed numbers must come out again, to the last digit."""
    from tumorscope.evaluation.evaluate import evaluate

    committed = json.loads((DEFAULT / "metrics-fold0.json").read_text())
    fresh = evaluate(DEFAULT, 0, tmp_path)
    assert fresh["fold_role"] == "test" and fresh["split"]["slices"] == 542
    for key in ("accuracy", "macro_f1"):
        assert fresh["classification"][key] == pytest.approx(committed["classification"][key],
                                                             abs=1e-9)
    assert fresh["segmentation"]["dice_mean_tumour"] == pytest.approx(
        committed["segmentation"]["dice_mean_tumour"], abs=1e-6)
    assert fresh["classification"]["confusion_matrix"] == \
        committed["classification"]["confusion_matrix"]


@pytest.mark.realdata
def test_demo_predicts_held_out_scans(shared_data: Path, tmp_path: Path) -> None:
    from test_end_to_end import cli

    res = cli("demo", "--out", str(tmp_path / "demo"), cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "demo").glob("*.json")]
    assert len(records) == 3
    assert all(r["model_id"].startswith("figshare-joint") for r in records)
    assert len(list((tmp_path / "demo").glob("*_overlay.png"))) == 3
