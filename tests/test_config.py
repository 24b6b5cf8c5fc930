"""Config: unknown keys and wrong types are named; overrides reach any key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tumorscope.config import dump_config, expand_env, load_config
from tumorscope.data import dataset_names
from tumorscope.errors import ConfigError
from tumorscope.tasks import task_names

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path, tmp_path: Path) -> None:
    cfg = load_config(path)
    assert cfg.data.dataset in dataset_names() and cfg.task in task_names()
    (tmp_path / "again.yaml").write_text(dump_config(cfg))  # what a run writes, reloads as is
    assert load_config(tmp_path / "again.yaml") == cfg


def test_overrides_any_key() -> None:
    cfg = load_config(REPO / "configs/figshare/joint-effb0.yaml",
                      ["trainer.epochs=3", "model.encoder=resnet34", "ema.enabled=false",
                       "data.val_fold=null", "optim.lr=3e-4"])
    assert (cfg.trainer.epochs, cfg.model.encoder, cfg.ema.enabled) == (3, "resnet34", False)
    assert cfg.data.val_fold is None and cfg.optim.lr == pytest.approx(3e-4)


def test_unknown_key_in_file(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("model:\n  encoderr: resnet18\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: model\.encoderr: unknown key"):
        load_config(tmp_path / "c.yaml")


def test_wrong_type_in_file(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("trainer:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"trainer\.epochs: .*integer.*'many'"):
        load_config(tmp_path / "c.yaml")


def test_unknown_override_lists_valid_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'trainer\.epoch'.*epochs"):
        load_config(None, ["trainer.epoch=3"])


def test_mapping_override_without_space_after_colon() -> None:
    """``{figshare:2}`` is YAML for a key 'figshare:2' without a value: named, not a type
    error about None; with the space it sets the value."""
    with pytest.raises(ConfigError, match=r"'figshare:2' reads as a key without a value.*"
                                          r"\{figshare: 2\}"):
        load_config(None, ["data.source_weights={figshare:2}"])
    assert load_config(None, ["data.source_weights={figshare: 2}"]).data.source_weights == {
        "figshare": 2}


def test_test_fold_cannot_be_validation_fold() -> None:
    with pytest.raises(ConfigError, match="val_fold must differ"):
        load_config(None, ["data.val_fold=0", "data.test_fold=0"])


def test_input_size_multiple_of_32() -> None:
    with pytest.raises(ConfigError, match="multiple of 32"):
        load_config(None, ["model.input_size=100"])


def test_env_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TS_X", raising=False)
    assert expand_env("${TS_X:-/d}/figshare") == "/d/figshare"
    monkeypatch.setenv("TS_X", "/data")
    assert expand_env("${TS_X:-/d}/figshare") == "/data/figshare"


def test_a_brats_run_refuses_a_slice_pack() -> None:
    configs = Path(__file__).resolve().parents[1] / "configs"
    with pytest.raises(ConfigError, match=r"data\.pack: packs hold 2D slices"):
        load_config(configs / "brats" / "segresnet-3d.yaml", ["data.pack=packs/x"])


def test_capsule_settings_on_a_timm_classifier_are_refused() -> None:
    configs = Path(__file__).resolve().parents[1] / "configs" / "classify"
    with pytest.raises(ConfigError, match=r"front_end='resnet18' replaces a capsule network"):
        load_config(configs / "resnet50-figshare.yaml", ["model.front_end=resnet18"])
    cfg = load_config(configs / "capsule-figshare.yaml", ["model.front_end=resnet18"])
    assert cfg.model.front_end == "resnet18"  # type: ignore[union-attr]
    for setting in ("model.routing_iterations=5", "model.reconstruction=true"):
        with pytest.raises(ConfigError, match=r"capsule network settings; arch 'timm'"):
            load_config(configs / "resnet50-figshare.yaml", [setting])
        load_config(configs / "capsule-figshare.yaml", [setting])
