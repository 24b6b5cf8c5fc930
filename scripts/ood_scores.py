"""Which feature score tells a dataset a model never saw from held-out slices of those it saw.

    python scripts/ood_scores.py models-lodo/lodo-nolgg-base --unseen lgg

A leave-one-dataset-out model's reference is refitted here for every candidate score (1,500
training slices, as `tumorscope calibrate --max-train 1500`; thresholds at the 99th and 95th
percentile of the validation fold): the Mahalanobis distance of each encoder stage's pooled
features, standardised sums over stages (what `calibrate` ships: the last two), k-nearest
neighbours by cosine similarity, energy and the maximum softmax. For each it prints the
AUROC of unseen-dataset slices (fold 0) against the seen datasets' held-out slices (the
card's test fold),
and the share flagged of each, and of the unseen slices the model wrongly calls tumours.
Experiment code for docs/trust.md; it writes nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import cast

import numpy as np
import torch
from scipy.special import logsumexp, softmax
from sklearn.covariance import LedoitWolf
from torch import nn

from tumorscope.checkpoint.store import load_checkpoint
from tumorscope.config import resolve_data_root
from tumorscope.data.prepare import keep_sources, prepare_split, spread
from tumorscope.data.registry import load_index
from tumorscope.data.slices import load_record, slice_batches
from tumorscope.data.splits import make_split
from tumorscope.transforms.slice2d import SlicePreprocessing
from tumorscope.uncertainty import auroc, no_tumour_class

Score = Callable[[str], np.ndarray]


def mahalanobis(train: np.ndarray, labels: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Squared distance to the nearest class mean under one Ledoit-Wolf precision."""
    means = np.stack([train[labels == c].mean(0) for c in np.unique(labels)])
    precision = LedoitWolf().fit(train - means[np.searchsorted(np.unique(labels), labels)]
                                 ).precision_
    return lambda z: np.min([np.einsum("nd,de,ne->n", z - m, precision, z - m) for m in means],
                            axis=0)


def knn(train: np.ndarray, k: int) -> Callable[[np.ndarray], np.ndarray]:
    """Minus the cosine similarity of the k-th nearest training slice (Sun et al. 2022)."""
    bank = train / np.linalg.norm(train, axis=1, keepdims=True)
    return lambda z: -np.sort((z / np.linalg.norm(z, axis=1, keepdims=True)) @ bank.T,
                              axis=1)[:, -k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--unseen", required=True, help="the dataset the model never saw")
    args = parser.parse_args()
    net, card = load_checkpoint(args.model)
    net.eval()
    cfg = card.experiment("model card")
    _, split = prepare_split(cfg)
    index = keep_sources(load_index(cfg.data.dataset, resolve_data_root(cfg, None)),
                         [args.unseen], "--unseen")
    unseen = make_split(index, cfg.data.folds, 0, None, cfg.seed, cfg.data.fold_source).test
    sets = {"train": spread(split.train, 1500), "val": split.val, "seen": split.test,
            "unseen": unseen}
    pre = SlicePreprocessing.from_card(card.preprocessing)
    encoder = cast(nn.Module, net.encoder)
    head = cast(nn.Module, net.classification_head)
    stages: dict[str, list[np.ndarray]] = {}
    logits: dict[str, np.ndarray] = {}
    for name, records in sets.items():
        parts, heads = [], []
        with torch.inference_mode():
            for batch, _ in slice_batches(pre, records, name):
                features = encoder(batch)
                heads.append(head(features[-1]).numpy())
                parts.append([f.mean(dim=(2, 3)).numpy() for f in features[1:]])
        stages[name] = [np.concatenate(s) for s in zip(*parts, strict=True)]
        logits[name] = np.concatenate(heads)
    labels = np.array([r.label for r in sets["train"]])
    n = len(stages["train"])
    per_stage = [mahalanobis(stages["train"][j], labels) for j in range(n)]
    raw = {name: [per_stage[j](stages[name][j]) for j in range(n)] for name in sets}
    centre = [raw["val"][j].mean() for j in range(n)]
    scale = [raw["val"][j].std() for j in range(n)]

    def summed(which: list[int]) -> Score:
        return lambda name: sum((raw[name][j] - centre[j]) / scale[j] for j in which)

    def stage(j: int) -> Score:
        return lambda name: raw[name][j]

    def joined(name: str) -> np.ndarray:
        return np.concatenate([f / np.linalg.norm(f, axis=1, keepdims=True)
                               for f in stages[name]], axis=1)

    last, near, near_all = n - 1, knn(stages["train"][-1], 10), knn(joined("train"), 10)
    scores: dict[str, Score] = {f"stage {j + 1} of {n}": stage(j) for j in range(n)}
    scores |= {
        "last two stages, standardised sum (shipped)": summed([last - 1, last]),
        "last three stages, standardised sum": summed([last - 2, last - 1, last]),
        "every stage, standardised sum": summed(list(range(n))),
        "kNN (k=10), deepest stage": lambda name: near(stages[name][-1]),
        "kNN (k=10), every stage": lambda name: near_all(joined(name)),
        "energy": lambda name: -logsumexp(logits[name], axis=1),
        "1 - max softmax": lambda name: 1 - softmax(logits[name], axis=1).max(1),
    }
    tumour = np.array([load_record(r)[1].any() for r in unseen])
    cal = card.calibration
    assert cal is not None and cal.tumour_threshold is not None
    none = no_tumour_class(card.classes)
    assert none is not None, "a model with a 'no tumour' class"
    no_tumour = card.classes.index(none)
    p = softmax(logits["unseen"] / cal.temperature, axis=1)
    alarm = ~tumour & (1 - p[:, no_tumour] >= cal.tumour_threshold)
    print(f"{args.model}: {args.unseen} fold 0 unseen ({len(unseen)} slices, {alarm.sum()} "
          f"false alarms); seen datasets' fold 0 {len(split.test)} slices")
    print("| score | AUROC unseen vs seen | flagged at 99th pct: unseen / false alarms / seen "
          "| at 95th pct: unseen / seen |\n| --- | --- | --- | --- |")
    for label, score in scores.items():
        got = {name: score(name) for name in ("val", "seen", "unseen")}
        both = np.r_[got["seen"], got["unseen"]]
        is_unseen = np.r_[np.zeros(len(got["seen"]), bool), np.ones(len(got["unseen"]), bool)]
        t99, t95 = np.percentile(got["val"], [99, 95])
        print(f"| {label} | {auroc(both, is_unseen):.3f} | {(got['unseen'] > t99).mean():.1%} / "
              f"{(got['unseen'][alarm] > t99).mean():.1%} / {(got['seen'] > t99).mean():.1%} | "
              f"{(got['unseen'] > t95).mean():.1%} / {(got['seen'] > t95).mean():.1%} |")


if __name__ == "__main__":
    main()
