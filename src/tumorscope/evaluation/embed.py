"""``tumorscope embed``: a t-SNE map of a model's pooled features on part of its data split.

The slices are read with the model's own preprocessing (its card), passed through the network
to its pooled features (models/features.py) and mapped to 2D by scikit-learn's t-SNE. Writes
``embedding.csv`` (one row per slice: id, patient, fold, part, class, x, y) and ``tsne.png``
(coloured by class, and by split part, or by fold when every fold is embedded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from tumorscope.checkpoint.card import ModelCard
from tumorscope.checkpoint.store import load_checkpoint
from tumorscope.config import ExperimentConfig
from tumorscope.data.prepare import prepare_split, spread
from tumorscope.data.records import DatasetIndex, Record
from tumorscope.data.slices import slice_batches
from tumorscope.data.splits import Split, assign_folds, make_split
from tumorscope.errors import CheckpointError, ConfigError
from tumorscope.models.features import pooled_features
from tumorscope.transforms.slice2d import SlicePreprocessing

PARTS = ("test", "val", "train", "all")
SPLIT_PARTS = ("train", "val", "test")  # legend order of the part panel


@dataclass
class Embedding:
    """What ``embed`` wrote: the two files, the slices mapped and the second panel's key."""

    csv: Path
    png: Path
    slices: int
    coloured_by: str


def split_for(cfg: ExperimentConfig, data_root: str | None = None, fold: int | None = None
              ) -> tuple[DatasetIndex, Split]:
    """The split the config describes, with ``fold`` (when given) as the test fold."""
    if fold is not None:
        if not 0 <= fold < cfg.data.folds:
            raise ConfigError("--fold", f"fold must be in 0..{cfg.data.folds - 1}")
        val = None if fold == cfg.data.val_fold else cfg.data.val_fold
        data = cfg.data.model_copy(update={"test_fold": fold, "val_fold": val})
        cfg = cfg.model_copy(update={"data": data})
    return prepare_split(cfg, data_root)


def chosen_records(split: Split, parts: Sequence[str]) -> list[tuple[Record, str]]:
    """Records of the chosen ``parts`` (``all``: every part), each with its part name."""
    wanted = SPLIT_PARTS if "all" in parts else [p for p in SPLIT_PARTS if p in parts]
    return [(r, part) for part in wanted for r in getattr(split, part)]


def own_parts(chosen: list[tuple[Record, str]], own: Split) -> list[tuple[Record, str]]:
    """``chosen`` relabelled with each slice's part in the model's own split (a ``--fold``
    override picks the slices; whether the model trained on them is what the map shows)."""
    part_of = {r.id: part for r, part in chosen_records(own, ["all"])}
    return [(r, part_of.get(r.id, part)) for r, part in chosen]


def record_features(model: nn.Module, pre: SlicePreprocessing, records: list[Record],
                    batch_size: int = 32) -> np.ndarray:
    """Pooled features ``(N, D)`` of ``records``."""
    model.eval()
    feats = []
    for batch, _ in slice_batches(pre, records, "features", batch_size):
        with torch.inference_mode():
            feats.append(pooled_features(model, batch).float().numpy())
    return np.concatenate(feats)


def tsne(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """2D t-SNE coordinates ``(N, 2)`` (perplexity ``min(30, (N - 1) / 3)``, PCA start)."""
    from sklearn.manifold import TSNE

    n = len(features)
    if n < 2:
        raise ConfigError("--part", f"{n} slice(s) to embed; t-SNE needs at least 2")
    mapper = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca",
                  random_state=seed)
    return np.asarray(mapper.fit_transform(features.astype(np.float64)))


def embedding_table(chosen: list[tuple[Record, str]], index: DatasetIndex,
                    fold_of: dict[str, int], coords: np.ndarray) -> pd.DataFrame:
    """One row per slice: id, patient, fold, part, class, x, y (class and part ordered)."""
    classes = [index.classes[r.label] for r, _ in chosen]
    return pd.DataFrame({
        "id": [r.id for r, _ in chosen], "patient": [r.patient for r, _ in chosen],
        "fold": [fold_of[r.patient] for r, _ in chosen],
        "part": pd.Categorical([p for _, p in chosen], categories=list(SPLIT_PARTS)),
        "class": pd.Categorical(classes, categories=index.classes),
        "x": coords[:, 0], "y": coords[:, 1]})


def embedding_png(table: pd.DataFrame, by: str, title: str) -> bytes:
    """Two scatter panels of ``table``'s x, y: coloured by class, and by column ``by``."""
    import matplotlib.pyplot as plt

    from tumorscope.reporting.plots import _png  # also selects the headless backend

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, column, colours in zip(axes, ("class", by), ("tab10", "Dark2"), strict=True):
        palette = plt.get_cmap(colours)  # qualitative; the two panels' colours differ
        for i, (name, group) in enumerate(table.groupby(column, observed=True, sort=True)):
            ax.scatter(group["x"], group["y"], s=10, alpha=0.8, label=str(name),
                       color=palette(i % palette.N))
        ax.set_title(f"coloured by {column}", fontsize=10)
        ax.legend(title=column, fontsize=8, markerscale=1.5, loc="best")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    return _png(fig)


def slice_model(checkpoint: str | Path, command: str = "embed"
                ) -> tuple[nn.Module, ModelCard, SlicePreprocessing]:
    """A 2D slice model, its card and its preprocessing (a one-line error, naming
    ``command``, for others)."""
    model, card = load_checkpoint(checkpoint)
    if "input_size" not in card.preprocessing:
        raise CheckpointError(checkpoint, f"{command} works on 2D slice models only; this is a "
                              f"{card.task!r} model")
    return model, card, SlicePreprocessing.from_card(card.preprocessing)


def embed(checkpoint: str | Path, out: str | Path, data_root: str | None = None,
          parts: Sequence[str] = ("test",), fold: int | None = None, limit: int | None = None,
          seed: int = 0, batch_size: int = 32) -> Embedding:
    """Map the pooled features of ``parts`` of the model's split; writes CSV and PNG to ``out``."""
    from tumorscope.io.writers import write_atomic

    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise ConfigError("--part", f"{unknown or 'none'}: choose from {list(PARTS)}")
    if limit is not None and limit < 1:
        raise ConfigError("--limit", f"must be at least 1, not {limit}")
    model, card, pre = slice_model(checkpoint)
    cfg = card.experiment(f"{checkpoint} (model card)")
    index, split = split_for(cfg, data_root, fold)
    chosen = chosen_records(split, parts)
    if fold is not None and fold != cfg.data.test_fold:
        # the model's own split of the same index (no second indexing of the dataset)
        chosen = own_parts(chosen, make_split(index, cfg.data.folds, cfg.data.test_fold,
                                              cfg.data.val_fold, cfg.seed,
                                              cfg.data.fold_source))
    chosen = spread(chosen, limit) if limit else chosen
    coords = tsne(record_features(model, pre, [r for r, _ in chosen], batch_size), seed)
    fold_of = assign_folds(index, cfg.data.folds, cfg.seed, cfg.data.fold_source)
    table = embedding_table(chosen, index, fold_of, coords)
    by = "fold" if "all" in parts else "part"
    what = ", ".join(parts) if "all" not in parts else "all folds"
    title = f"{card.name}: t-SNE of pooled features, {what} (n={len(table)})"
    out = Path(out)
    csv = write_atomic(out / "embedding.csv", lambda p: table.to_csv(p, index=False))
    png = write_atomic(out / "tsne.png", lambda p: p.write_bytes(embedding_png(table, by, title)))
    return Embedding(csv, png, len(table), by)
