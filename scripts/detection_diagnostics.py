"""Where a joint model's tumour / no-tumour decision fails on a dataset, and three cheap levers.

    python scripts/detection_diagnostics.py MODEL [MODEL ...] --sources lgg [--adapt-fold 1]

For each model, on one fold's slices of ``--sources`` (default: fold 0, the held-out one):
- detection AUROC of the class score ``1 - p(no tumour)`` and of two mask-derived scores (the
  peak mask probability and the area above 0.5, over every mask output);
- the same by image channel and by position within the patient's stack, where known (LGG);
- with ``--adapt-fold K``: AdaBN (Li et al. 2016), every BatchNorm's statistics re-estimated
  on fold K's slices of the same sources, labels unused; AUROC, tumours caught, false alarms
  at the model's calibrated threshold and tumour-type accuracy, before and after.
With several models: AUROC of every pair's mean class score (a two-member ensemble).
Experiment code for docs/trust.md; it trains nothing and writes nothing.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tumorscope.config import resolve_data_root
from tumorscope.data.prepare import keep_sources
from tumorscope.data.records import Record
from tumorscope.data.registry import load_index
from tumorscope.data.slices import load_record
from tumorscope.data.splits import make_split
from tumorscope.experiments.robustness import corrupt
from tumorscope.inference.joint import JointInferer, sigmoid
from tumorscope.inference.predictor import Predictor
from tumorscope.inference.runtime import TorchRunner
from tumorscope.uncertainty import auroc, softmax

BANDS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0))


@dataclass
class Scores:
    """Per-slice outputs of one model on one fold."""

    probs: np.ndarray  # calibrated class probabilities (N, K)
    peak: np.ndarray  # highest mask probability over every output (N,)
    area: np.ndarray  # largest share of pixels above 0.5 over the outputs (N,)


def fold_records(predictor: Predictor, sources: list[str], fold: int) -> list[Record]:
    """The fold's records of ``sources``, split as the model's card says."""
    cfg = predictor.card.experiment("model card")
    index = keep_sources(load_index(cfg.data.dataset, resolve_data_root(cfg, None)), sources,
                         "--sources")
    return make_split(index, cfg.data.folds, fold, None, cfg.seed, cfg.data.fold_source).test


def batches(inferer: JointInferer, records: list[Record], size: int = 32,
            corruption: str = "none") -> Iterator[np.ndarray]:
    """Network inputs, ``size`` slices at a time, each degraded by ``corruption`` (one of
    ``tumorscope robustness``'s, seeded by the slice's place)."""
    for start in range(0, len(records), size):
        chunk = [(start + i, load_record(r)) for i, r in enumerate(records[start:start + size])]
        yield np.stack([inferer.pre(pixels if corruption == "none"
                                    else corrupt(pixels, corruption, i, mask)[0])
                        for i, (pixels, mask) in chunk])


def run(inferer: JointInferer, records: list[Record], corruption: str = "none") -> Scores:
    """Class probabilities and mask-derived scores of every record."""
    probs, peak, area = [], [], []
    for batch in batches(inferer, records, corruption=corruption):
        out = inferer.runner(batch)
        probs.append(softmax(out["class_logits"], inferer.calibration.temperature))
        masks = sigmoid(out["mask_logits"])
        peak.append(masks.max(axis=(1, 2, 3)))
        area.append((masks > 0.5).mean(axis=(2, 3)).max(axis=1))
    return Scores(np.concatenate(probs), np.concatenate(peak), np.concatenate(area))


def adapt_batchnorm(model: torch.nn.Module, inputs: Iterator[np.ndarray]) -> None:
    """AdaBN: every BatchNorm's running statistics replaced by those of ``inputs``."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch
        m.train()
    with torch.no_grad():
        for batch in inputs:
            model(torch.from_numpy(batch).contiguous(memory_format=torch.channels_last))
    for m in norms:
        m.eval()


def _auroc(score: np.ndarray, tumour: np.ndarray) -> str:
    return f"{auroc(score, tumour):.3f}" if 0 < tumour.sum() < len(tumour) else "n/a"


def decision_line(inferer: JointInferer, scores: Scores, records: list[Record],
                  tumour: np.ndarray) -> str:
    """AUROC, tumours caught and false alarms at the calibrated threshold, tumour-type
    accuracy (the highest tumour class on tumour slices)."""
    k = inferer.no_tumour
    assert k is not None
    score = 1 - scores.probs[:, k]
    found = score >= inferer.calibration.tumour_threshold
    labels = np.array([r.label for r in records])
    typed = np.array([inferer.tumour_type(row) for row in scores.probs]) == labels
    alarms = f"{found[~tumour].mean():.1%}" if (~tumour).any() else "n/a"
    return (f"AUROC {_auroc(score, tumour)}, caught {found[tumour].mean():.1%}, false alarms "
            f"{alarms}, tumour type {typed[tumour].mean():.3f}")


def _group(name: str, keep: np.ndarray, score: np.ndarray, tumour: np.ndarray) -> str:
    free = keep & ~tumour
    mean = f"{score[free].mean():.3f}" if free.any() else "n/a"
    return (f"  {name}: {keep.sum()} slices ({tumour[keep].sum()} tumour), AUROC "
            f"{_auroc(score[keep], tumour[keep])}, mean score of tumour-free slices {mean}")


def breakdown(score: np.ndarray, tumour: np.ndarray, records: list[Record]) -> list[str]:
    """Detection AUROC by channel and by relative position in the patient's stack."""
    channels = np.array([-1 if r.channel is None else r.channel for r in records])
    lines = [_group(f"channel {c}", channels == c, score, tumour)
             for c in sorted(set(channels.tolist()) - {-1})]
    if all(r.position is not None for r in records):
        ends: dict[str, list[int]] = {}
        for r in records:
            ends.setdefault(r.patient, []).append(int(r.position or 0))
        place = np.array([(int(r.position or 0) - min(ends[r.patient]))
                          / max(1, max(ends[r.patient]) - min(ends[r.patient])) for r in records])
        lines += [_group(f"stack {low:.1f}-{high:.1f}",
                         (place >= low) & ((place < high) | (high == 1.0)), score, tumour)
                  for low, high in BANDS]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--sources", nargs="+", required=True)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--adapt-fold", type=int, help="AdaBN on this fold's slices")
    parser.add_argument("--adapt-limit", type=int, default=800, help="slices used to adapt")
    args = parser.parse_args()
    tumour_scores = {}
    first: list[str] | None = None
    for path in args.models:
        predictor = Predictor.from_checkpoint(path, backend="torch")
        inferer = predictor.inferer
        assert isinstance(inferer, JointInferer) and inferer.no_tumour is not None
        records = fold_records(predictor, args.sources, args.fold)
        first = first or [r.id for r in records]
        if [r.id for r in records] != first:
            raise SystemExit(f"{path}: its fold {args.fold} is not the first model's")
        tumour = np.array([load_record(r)[1].any() for r in records])
        scores = run(inferer, records)
        score = 1 - scores.probs[:, inferer.no_tumour]
        tumour_scores[str(path)] = score
        print(f"{path} on {'+'.join(args.sources)} fold {args.fold}: {len(records)} slices, "
              f"{tumour.sum()} with tumour")
        print(f"  class score: {decision_line(inferer, scores, records, tumour)}")
        print(f"  mask peak AUROC {_auroc(scores.peak, tumour)}, mask area AUROC "
              f"{_auroc(scores.area, tumour)}, mean of class score and peak "
              f"{_auroc((score + scores.peak) / 2, tumour)}")
        print("\n".join(breakdown(score, tumour, records)))
        if args.adapt_fold is not None:
            assert isinstance(inferer.runner, TorchRunner)
            pool = fold_records(predictor, args.sources, args.adapt_fold)
            pick = np.random.default_rng(0).permutation(len(pool))[:args.adapt_limit]
            adapt_batchnorm(inferer.runner.model, batches(inferer, [pool[i] for i in pick]))
            adapted = run(inferer, records)
            print(f"  AdaBN on fold {args.adapt_fold} ({len(pick)} slices): "
                  f"{decision_line(inferer, adapted, records, tumour)}")
    if len(tumour_scores) > 1:
        for a, b in itertools.combinations(tumour_scores, 2):
            print(f"ensemble {a} + {b}: AUROC "
                  f"{_auroc((tumour_scores[a] + tumour_scores[b]) / 2, tumour)}")


if __name__ == "__main__":
    main()
