"""``tumorscope train``: data, task module and Lightning Trainer from one config; resume a run;
export the selected weights when it finishes. The task (config ``task``) is looked up in the
task registry, so this file knows no concrete task."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch

from tumorscope.checkpoint.store import read_card
from tumorscope.config import ExperimentConfig, dump_config, load_config, resolve_data_root
from tumorscope.data.prepare import prepare_split
from tumorscope.data.sampling import Loaders
from tumorscope.data.splits import Split
from tumorscope.errors import CheckpointError, ConfigError, TumorscopeError
from tumorscope.tasks.registry import get_task
from tumorscope.tasks.stages import first_final_epoch
from tumorscope.training.callbacks import CHECKPOINT_DIR, standard_callbacks
from tumorscope.training.ckpt_io import (
    AtomicCheckpointIO,
    load_training_checkpoint,
    remove_orphans,
    safe_unpickling,
)
from tumorscope.training.export import export_checkpoint
from tumorscope.training.history import CSV_DIR, archive_metrics

log = logging.getLogger("tumorscope.train")
CONFIG_NAME = "config.yaml"


def machine_precision(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with a precision this machine has: float16 mixed precision needs a GPU, so on
    a CPU it falls back to 32-bit with a one-line note (bf16-mixed is the CPU's option)."""
    on_gpu = cfg.trainer.accelerator in ("gpu", "cuda") or (
        cfg.trainer.accelerator == "auto" and torch.cuda.is_available())
    if cfg.trainer.precision != "16-mixed" or on_gpu:
        return cfg
    print("note: trainer.precision 16-mixed needs a GPU and none is in use; training in 32-bit "
          "(set trainer.precision=bf16-mixed for mixed precision on a CPU)", flush=True)
    return cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"precision": "32"})})


def check_output(cfg: ExperimentConfig, data_root: str | None = None) -> None:
    """Never write runs into a dataset: refuse an output folder inside the data root."""
    data = resolve_data_root(cfg, data_root).resolve()
    if cfg.run_dir.resolve().is_relative_to(data):
        raise ConfigError("output.root", f"{cfg.run_dir} is inside the dataset folder {data}; "
                          "write runs elsewhere (output.root, --root-dir is the output folder "
                          "of `train`; `tumorscope lgg --root_dir` is the dataset)")


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest resumable Lightning checkpoint of a run (epoch-end or mid-epoch)."""
    found = [p for p in (run_dir / CHECKPOINT_DIR).glob("*.ckpt")
             if p.name.startswith(("last", "step"))]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def intact_checkpoint(run_dir: Path) -> Path:
    """The newest checkpoint that loads (step, last, then best): an unreadable newest one
    (torn by a kill) is passed over with a one-line note; an unsafe one stops the resume."""
    folder = run_dir / CHECKPOINT_DIR
    remove_orphans(folder)
    found = sorted((p for p in folder.glob("*.ckpt") if p.name.startswith(("last", "step"))),
                   key=lambda p: p.stat().st_mtime_ns, reverse=True)
    candidates = [*found, *([folder / "best.ckpt"] if (folder / "best.ckpt").is_file() else [])]
    for path in candidates:
        try:
            load_training_checkpoint(path)
        except CheckpointError as err:
            if "refused" in err.problem:
                raise
            print(f"note: {err}; trying an older checkpoint", flush=True)
            continue
        return path
    raise TumorscopeError(run_dir, "no intact checkpoint to resume from (checkpoints/"
                          "step.ckpt, last.ckpt or best.ckpt)")


def check_warm_start(cfg: ExperimentConfig, split: Split) -> None:
    """Refuse ``init_weights`` from a model that trained or was selected on any patient of
    this run's test fold (compared by patient id; synthetic slices by their source patient).
    A bare weights file, or a model whose data is not here, is used with a note."""
    if not cfg.init_weights:
        return
    source = Path(cfg.init_weights).expanduser()
    try:
        theirs = prepare_split(read_card(source).experiment(str(source)))[1]
    except TumorscopeError as err:
        print(f"note: init_weights {source}: cannot check that it never saw this run's test "
              f"patients ({err.problem})", flush=True)
        return
    seen = {plain_patient(r.patient) for r in [*theirs.train, *theirs.val]}
    overlap = sorted(seen & {plain_patient(r.patient) for r in split.test})
    if overlap:
        raise ConfigError("init_weights", f"{source} was trained or selected on {len(overlap)} "
                          f"patient(s) of this run's test fold {split.test_fold} (e.g. "
                          f"{', '.join(overlap[:3])}); warm-start from a model whose split "
                          "holds them out")


def plain_patient(patient: str) -> str:
    """A patient id without the synthetic-slice prefix (``synthetic-<source patient>``)."""
    return patient.removeprefix("synthetic-")


def refuse_started(run_dir: Path) -> None:
    """A fresh start must not train over a run that has checkpoints."""
    if latest_checkpoint(run_dir) is not None:
        raise ConfigError(run_dir, "run already has checkpoints; pass --resume to continue it "
                          "or choose another output.run_name")


def _resume_point(run_dir: Path, resume: bool) -> Path | None:
    if resume:
        return intact_checkpoint(run_dir)
    refuse_started(run_dir)
    return None


def _trainer(cfg: ExperimentConfig, loaders: Loaders,
             callbacks: Sequence[L.Callback]) -> L.Trainer:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    run_dir, t = cfg.run_dir, cfg.trainer
    return L.Trainer(
        default_root_dir=run_dir, max_epochs=t.epochs, precision=t.precision,
        accelerator=t.accelerator, devices=t.devices, strategy=t.strategy, num_nodes=t.num_nodes,
        limit_train_batches=t.limit_train_batches, limit_val_batches=t.limit_val_batches,
        gradient_clip_val=t.gradient_clip, accumulate_grad_batches=t.accumulate_grad_batches,
        deterministic=t.deterministic, log_every_n_steps=t.log_every_n_steps,
        callbacks=standard_callbacks(cfg, run_dir, loaders, callbacks),
        use_distributed_sampler=False,  # EpochOrder shards by rank itself
        plugins=[AtomicCheckpointIO()],
        logger=[TensorBoardLogger(run_dir, name="tensorboard", version=""),
                CSVLogger(run_dir, name=CSV_DIR, version="")],
        num_sanity_val_steps=0, enable_model_summary=True,
        min_epochs=first_final_epoch(cfg) + 1,  # early stopping waits for the exported size
    )


def train(cfg: ExperimentConfig, resume: bool = False, data_root: str | None = None,
          callbacks: Sequence[L.Callback] = ()) -> Path:
    """Train (or resume) the run ``cfg.run_dir``; returns the exported checkpoint directory.

    ``callbacks`` are added to the standard ones (checkpoints, early stopping, progress).
    """
    spec = get_task(cfg.task)
    cfg = machine_precision(cfg)
    check_output(cfg, data_root)
    run_dir = cfg.run_dir
    ckpt_path = _resume_point(run_dir, resume)
    L.seed_everything(cfg.training_seed, workers=True, verbose=False)
    index, split = prepare_split(cfg, data_root, use_pack=True)
    if ckpt_path is None:
        check_warm_start(cfg, split)
    loaders: Loaders = spec.load("data")(cfg, split)
    module = spec.load("module")(cfg.model_dump(mode="json"), index.classes, loaders.stats,
                                 load_pretrained=ckpt_path is None)
    run_dir.mkdir(parents=True, exist_ok=True)
    if ckpt_path is not None:
        archive_metrics(run_dir)
    (run_dir / CONFIG_NAME).write_text(dump_config(cfg), encoding="utf-8")
    trainer = _trainer(cfg, loaders, callbacks)
    with safe_unpickling():
        trainer.fit(module, loaders.train, loaders.val, ckpt_path=ckpt_path, weights_only=True)
    if not trainer.is_global_zero:
        return run_dir / "model"
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    return export_checkpoint(cfg, Path(best) if best else None, index, split, loaders.stats)


def config_for_resume(run_dir: Path, overrides: list[str]) -> ExperimentConfig:
    """The config a run was started with, plus overrides (e.g. more epochs)."""
    path = run_dir / CONFIG_NAME
    if not path.is_file():
        raise TumorscopeError(run_dir, f"not a tumorscope run ({CONFIG_NAME} missing; a run "
                              "stopped before training began, e.g. while pre-training, resumes "
                              "by running its train command again)")
    cfg = load_config(path, overrides)
    root = run_dir.parent
    return cfg.model_copy(update={"output": cfg.output.model_copy(
        update={"root": str(root), "run_name": run_dir.name})})
