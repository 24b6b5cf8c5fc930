"""The results suite end to end on a tiny budget (real figshare data)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.realdata
@pytest.mark.slow
def test_results_suite_tiny(shared_data: Path, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    from tumorscope.experiments import results

    tiny = ["model.input_size=64", "trainer.epochs=1", "early_stopping.enabled=false",
            "data.limit_per_split=24", "model.encoder=resnet18", "model.encoder_weights=none",
            "trainer.batch_size=8"]
    monkeypatch.setattr(results, "BUDGET", tiny)
    monkeypatch.setattr(results, "VARIANTS", {"recipe": [], "without EMA": ["ema.enabled=false"]})
    config = REPO / "configs" / "figshare" / "joint-lite0.yaml"
    first = results.run_suite(config, tmp_path / "runs" / "recipe" / "model", tmp_path / "runs")
    assert set(first["ablations"]) == {"recipe", "without EMA"}
    for m in first["ablations"].values():
        assert m.fold_role == "validation"  # ablations never look at the test fold
    assert {m.fold_role for m in first["held_out"].values()} == {"test"}
    out = results.write_results(first, tmp_path / "docs" / "results.md",
                                tmp_path / "runs" / "recipe" / "model")
    text = out.read_text()
    assert "plain-loop baseline" in text and "without EMA" in text
    assert "| recipe |" in text and "| +0.000 [+0.000, +0.000] |" in text  # Δ of the reference
    assert (tmp_path / "docs" / "results" / "confusion-matrix.png").is_file()
    assert len(list((tmp_path / "docs" / "results").glob("bad-*.png"))) == 4
    again = results.run_suite(config, tmp_path / "runs" / "recipe" / "model",
                              tmp_path / "runs")  # cached: nothing retrains
    for name, metrics in again["held_out"].items():
        assert metrics.classification == first["held_out"][name].classification
