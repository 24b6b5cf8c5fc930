"""Finishing a run, and pre-training it on pix2pix-synthesised slices first when its config
has a ``pretrain`` section (the capsule project's recipe). Pre-training belongs to the run, so
under ``tumorscope cv`` every fold gets its own: a generator trained on that fold's training
patients only, slices drawn from it, a short run on them, whose weights start the real run.
Each step resumes: the generator from its saved state, the synthetic set is written whole or
not at all, the pre-training run from its checkpoints. Layout inside the run folder::

    pretrain/generator/            pix2pix, trained on the run's training patients
    pretrain/synthetic/            the synthetic dataset drawn from it
    pretrain/run/model/            the pre-trained weights (init_weights of the real run)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tumorscope.checkpoint.store import checkpoint_paths
from tumorscope.config import ExperimentConfig, PretrainConfig, build_config
from tumorscope.data.prepare import prepare_split
from tumorscope.errors import ConfigError

log = logging.getLogger("tumorscope.pretrain")
PRETRAIN_DIR = "pretrain"
SYNTHETIC_FOLDS = 10  # the synthetic set is split by source patient; fold 1 selects the model


def exported_model(run_dir: Path) -> Path | None:
    """The run's exported model folder when it is complete (weights and card)."""
    weights, card = checkpoint_paths(run_dir / "model")
    return run_dir / "model" if weights.is_file() and card.is_file() else None


def finish_run(cfg: ExperimentConfig, data_root: str | None = None) -> Path:
    """The run's exported model: the finished one, else resumed, else trained afresh (after
    its pre-training on synthetic slices when ``cfg.pretrain`` asks for it)."""
    from tumorscope.training.run import latest_checkpoint, train

    run_dir = cfg.run_dir
    model = exported_model(run_dir)
    if model is not None:
        log.info("run %s already finished; evaluating its model", run_dir)
        return model
    resume = latest_checkpoint(run_dir) is not None
    if not resume:
        cfg = pretrained_start(cfg, data_root)
    log.info("%s run %s", "resuming" if resume else "training", run_dir)
    return train(cfg, resume=resume, data_root=data_root)


def pretrain_settings(cfg: ExperimentConfig) -> PretrainConfig | None:
    """The config's ``pretrain`` section (only classify experiments have one)."""
    settings = getattr(cfg, "pretrain", None)
    return settings if isinstance(settings, PretrainConfig) else None


def synthetic_config(cfg: ExperimentConfig, root: Path, epochs: int, sources: int
                     ) -> ExperimentConfig:
    """The pre-training run: ``cfg``'s model and recipe on the synthetic set at ``root`` (split
    into at most 10 folds by its ``sources`` source patients; fold 1 selects), ``epochs`` at
    the model's input size, written to ``<run>/pretrain``."""
    if sources < 3:
        raise ConfigError("pretrain", f"the synthetic slices come from {sources} training "
                          "patient(s); pre-training needs at least 3 (train, select, hold out)")
    tree = cfg.model_dump(mode="json")
    tree["data"].update(dataset="synthetic", root=str(root),
                        folds=min(SYNTHETIC_FOLDS, sources),
                        test_fold=0, val_fold=1, fold_source="computed", sources=None,
                        source_weights=None, limit_per_split=None)
    tree["trainer"]["epochs"] = epochs
    tree["early_stopping"]["enabled"] = False
    tree.update(name=f"{cfg.name}-synthetic", init_weights=None, stages=[], pretrain=None,
                output={"root": str(cfg.run_dir / PRETRAIN_DIR), "run_name": "run"})
    return build_config(tree, f"pre-training of {cfg.run_dir} on synthetic slices")


def draw_synthetic(cfg: ExperimentConfig, settings: PretrainConfig, out: Path,
                   data_root: str | None = None) -> int:
    """Train (or resume) pix2pix on the run's training patients and draw the synthetic set
    into ``out`` (kept when complete); refused if any validation or test patient reached it.
    Returns the number of patients whose slices conditioned it."""
    from tumorscope.data.synthetic import MANIFEST
    from tumorscope.synthesis.generate import check_no_leak, synthesize
    from tumorscope.synthesis.pix2pix import PATIENTS, STATE, train_pix2pix

    index, split = prepare_split(cfg, data_root)
    held_out = {r.patient for r in split.val + split.test}
    if (out / MANIFEST).is_file():
        log.info("synthetic set %s already drawn", out)
    else:
        generator = out.parent / "generator"
        train_pix2pix(split.train, generator, index.classes, settings.gan_size,
                      settings.gan_steps, settings.gan_batch_size, cfg.seed,
                      base_channels=settings.gan_width,
                      resume=(generator / STATE).is_file())
        synthesize(generator, split.train, settings.synthetic, out, cfg.seed)
    check_no_leak(out / MANIFEST, held_out)
    return len(json.loads((out / PATIENTS).read_text(encoding="utf-8"))["conditioning"])


def pretrained_start(cfg: ExperimentConfig, data_root: str | None = None) -> ExperimentConfig:
    """``cfg`` unchanged without a ``pretrain`` section; else, after drawing the synthetic set
    and pre-training on it (each step resumed or skipped when done), ``cfg`` starting from the
    pre-trained weights (``init_weights``)."""
    settings = pretrain_settings(cfg)
    if settings is None:
        return cfg
    folder = cfg.run_dir / PRETRAIN_DIR
    model = folder / "run" / "model"
    if cfg.init_weights and Path(cfg.init_weights) != model:
        raise ConfigError("init_weights", "the run pre-trains on synthetic slices (pretrain); "
                          "unset init_weights or the pretrain section")
    synthetic = folder / "synthetic"
    sources = draw_synthetic(cfg, settings, synthetic, data_root)
    log.info("pre-training on %d synthetic slices (%s)", settings.synthetic, synthetic)
    weights = finish_run(synthetic_config(cfg, synthetic, settings.epochs, sources))
    return cfg.model_copy(update={"init_weights": str(weights)})
