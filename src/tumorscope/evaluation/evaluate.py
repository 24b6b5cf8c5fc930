"""``tumorscope evaluate``: a saved model on one patient fold, by the evaluator its task
registers (e.g. evaluation/joint.py). Refuses folds the model trained on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tumorscope.checkpoint.card import ModelCard
from tumorscope.config import ExperimentConfig, resolve_data_root
from tumorscope.data.prepare import keep_sources
from tumorscope.data.records import DatasetIndex, Record
from tumorscope.data.registry import load_index
from tumorscope.data.splits import make_split
from tumorscope.errors import ConfigError
from tumorscope.evaluation.result import EvaluationResult
from tumorscope.inference.predictor import Predictor


def fold_role(card: ModelCard, fold: int) -> str:
    """'test' (held out), 'validation' (used for model selection) or 'train' for this model."""
    split = card.data.split
    if fold == split.test_fold:
        return "test"
    if fold == split.val_fold:
        return "validation"
    return "train"


@dataclass
class EvaluationJob:
    """What a task's evaluator gets: the model, its config, and the fold's records."""

    checkpoint: Path
    predictor: Predictor
    cfg: ExperimentConfig
    index: DatasetIndex
    records: list[Record]
    fold: int
    role: str
    out: Path
    batch_size: int = 16
    gallery: int = 8


def evaluate(checkpoint: str | Path, fold: int, out_dir: str | Path,
             data_root: str | None = None, batch_size: int = 16, tta: bool = False,
             gallery: int = 8, allow_train_fold: bool = False,
             backend: str = "torch", sources: list[str] | None = None,
             mc_dropout: int = 0) -> EvaluationResult:
    """Evaluate on every slice of ``fold``; writes ``metrics.json`` and ``report.html``.

    ``sources`` picks datasets of a mixed collection (default: those the model trained on),
    e.g. the one a leave-one-dataset-out model never saw.

    The reference back end (PyTorch) is the default so numbers reproduce on any machine.
    """
    predictor = Predictor.from_checkpoint(checkpoint, tta=tta, backend=backend,
                                          mc_dropout=mc_dropout)
    card = predictor.card
    cfg = card.experiment(f"{checkpoint} (model card)")
    if not 0 <= fold < cfg.data.folds:
        raise ConfigError("--fold", f"fold must be in 0..{cfg.data.folds - 1}")
    role = fold_role(card, fold)
    if role == "train" and not allow_train_fold:
        raise ConfigError("--fold", f"fold {fold} was used to train this model; its metrics "
                          "would be inflated (pass --allow-train-fold to compute them anyway)")
    index = keep_sources(load_index(cfg.data.dataset, resolve_data_root(cfg, data_root)),
                         sources if sources is not None else cfg.data.sources,
                         "--sources" if sources is not None else "data.sources")
    split = make_split(index, cfg.data.folds, fold, None, cfg.seed, cfg.data.fold_source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    job = EvaluationJob(Path(checkpoint), predictor, cfg, index, split.test, fold, role, out,
                        batch_size, gallery)
    result: EvaluationResult = predictor.spec.load("evaluator")(job)
    return result
