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
import os
import shutil
from pathlib import Path

from tumorscope.checkpoint.store import checkpoint_paths
from tumorscope.config import ExperimentConfig, PretrainConfig, build_config
from tumorscope.data.prepare import prepare_split
from tumorscope.errors import ConfigError
from tumorscope.io.writers import write_json

log = logging.getLogger("tumorscope.pretrain")
PRETRAIN_DIR = "pretrain"
SETTINGS = "settings.json"  # the pre-training settings a run folder was started with
SYNTHETIC_FOLDS = 10  # the synthetic set is split by source patient; fold 1 selects the model


def exported_model(run_dir: Path) -> Path | None:
    """The run's exported model folder when it is complete (weights and card)."""
    weights, card = checkpoint_paths(run_dir / "model")
    return run_dir / "model" if weights.is_file() and card.is_file() else None


def finish_run(cfg: ExperimentConfig, data_root: str | None = None) -> Path:
    """The run's exported model: the finished one, else resumed, else trained afresh (after
    its pre-training on synthetic slices when ``cfg.pretrain`` asks for it). A run folder
    started with other pre-training settings (or none) is refused, never reused."""
    from tumorscope.training.run import latest_checkpoint, train

    run_dir = cfg.run_dir
    claim_pretrain(cfg)
    model = exported_model(run_dir)
    if model is not None:
        log.info("run %s already finished; evaluating its model", run_dir)
        return model
    resume = latest_checkpoint(run_dir) is not None
    if not resume:
        cfg = pretrained_start(cfg, data_root)
    elif pretrain_settings(cfg) is not None:  # the resumed run keeps its record of the start
        cfg = cfg.model_copy(update={"init_weights": str(pretrained_model(cfg))})
    log.info("%s run %s", "resuming" if resume else "training", run_dir)
    return train(cfg, resume=resume, data_root=data_root)


def pretrained_model(cfg: ExperimentConfig) -> Path:
    """Where a run's pre-trained weights are (``init_weights`` of the real run)."""
    return cfg.run_dir / PRETRAIN_DIR / "run" / "model"


def claim_pretrain(cfg: ExperimentConfig) -> None:
    """Record a run's pre-training settings in ``<run>/pretrain/settings.json``; refuse a run
    folder that was started with other settings, or without pre-training when ``cfg`` asks
    for it (and the reverse), so no model is reused under the wrong description."""
    settings = pretrain_settings(cfg)
    wanted = None if settings is None else {**settings.model_dump(mode="json"),
                                            "seed": cfg.seed}
    from tumorscope.training.callbacks import CHECKPOINT_DIR
    from tumorscope.training.run import CONFIG_NAME

    path = cfg.run_dir / PRETRAIN_DIR / SETTINGS
    started = any((cfg.run_dir / name).exists() for name in (CONFIG_NAME, CHECKPOINT_DIR,
                                                               "model"))
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
    else:
        saved = None if started else wanted
    if saved != wanted:
        raise ConfigError(cfg.run_dir, f"was started with pretrain {saved}, this config asks "
                          f"for {wanted}; choose another output.run_name (or --out)")
    if wanted is not None and not path.is_file():
        write_json(path, wanted)


def pretrain_settings(cfg: ExperimentConfig) -> PretrainConfig | None:
    """The config's ``pretrain`` section (only classify experiments have one)."""
    settings = getattr(cfg, "pretrain", None)
    return settings if isinstance(settings, PretrainConfig) else None


def check_sources(sources: int) -> None:
    """The synthetic set is split by source patient into train, selection and held-out parts,
    so it needs slices of at least 3 patients."""
    if sources < 3:
        raise ConfigError("pretrain", f"the synthetic slices come from {sources} training "
                          "patient(s); pre-training needs at least 3 (train, select, hold out)")


def synthetic_config(cfg: ExperimentConfig, root: Path, epochs: int, sources: int
                     ) -> ExperimentConfig:
    """The pre-training run: ``cfg``'s model and recipe on the synthetic set at ``root`` (split
    into at most 10 folds by its ``sources`` source patients; fold 1 selects), ``epochs`` at
    the model's input size, written to ``<run>/pretrain``."""
    check_sources(sources)
    tree = cfg.model_dump(mode="json")
    tree["data"].update(dataset="synthetic", root=str(root),
                        folds=min(SYNTHETIC_FOLDS, sources),
                        test_fold=0, val_fold=1, fold_source="computed", sources=None,
                        source_weights=None, limit_per_split=None)
    tree["trainer"].update(epochs=epochs, devices=1, num_nodes=1, strategy="auto")
    tree["optim"].update(freeze_encoder_epochs=0, train_only=None)  # the whole body learns
    tree["scheduler"]["warmup_epochs"] = min(tree["scheduler"]["warmup_epochs"], epochs - 1)
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
    check_sources(min(settings.synthetic, len({r.patient for r in split.train})))  # before GAN
    if (out / MANIFEST).is_file():
        log.info("synthetic set %s already drawn", out)
    else:
        generator = out.parent / "generator"
        train_pix2pix(split.train, generator, index.classes, settings.gan_size,
                      settings.gan_steps, settings.gan_batch_size, cfg.seed,
                      base_channels=settings.gan_width,
                      resume=(generator / STATE).is_file())
        for torn in out.parent.glob(f".{out.name}.*.partial"):  # a draw killed outright
            shutil.rmtree(torn, ignore_errors=True)
        synthesize(generator, split.train, settings.synthetic, out, cfg.seed)
    check_no_leak(out / MANIFEST, held_out)
    return len(json.loads((out / PATIENTS).read_text(encoding="utf-8"))["conditioning"])


def pretrained_start(cfg: ExperimentConfig, data_root: str | None = None) -> ExperimentConfig:
    """``cfg`` unchanged without a ``pretrain`` section; else, after drawing the synthetic set
    and pre-training on it (each step resumed or skipped when done), ``cfg`` starting from the
    pre-trained weights (``init_weights``). Checks what ``train`` would refuse first, so
    nothing is pre-trained for a run that cannot start."""
    from tumorscope.training.run import check_output, refuse_started

    settings = pretrain_settings(cfg)
    if settings is None:
        return cfg
    model = pretrained_model(cfg)
    given = cfg.init_weights and Path(cfg.init_weights).expanduser().resolve()
    if given and given != model.resolve():
        raise ConfigError("init_weights", "the run pre-trains on synthetic slices (pretrain); "
                          "unset init_weights or the pretrain section")
    check_output(cfg, data_root)
    refuse_started(cfg.run_dir)
    claim_pretrain(cfg)
    if exported_model(model.parent) is None and os.environ.get("LOCAL_RANK", "0") != "0":
        raise ConfigError("pretrain", "pre-training runs in one process: run it first with "
                          "trainer.devices=1, then launch the multi-process run")
    synthetic = cfg.run_dir / PRETRAIN_DIR / "synthetic"
    sources = draw_synthetic(cfg, settings, synthetic, data_root)
    log.info("pre-training on %d synthetic slices (%s)", settings.synthetic, synthetic)
    weights = finish_run(synthetic_config(cfg, synthetic, settings.epochs, sources))
    return cfg.model_copy(update={"init_weights": str(weights)})
