"""``tumorscope realism``: how far synthetic slices lie from held-out real ones in a trained
model's feature space (Fréchet distance, as in FID), with a scale to read the number by.

Three sets of slices go through the model's own preprocessing (its card) to its pooled features:
the synthetic set, the config split's test fold (held-out patients, never seen by the
generator: checked) and an evenly spread subset of the training fold. Each is compared with
the held-out slices:

* ``real_train``: the floor a perfect generator would reach (sampling noise, patient shift);
* ``synthetic``: the synthetic set, overall and per class;
* ``blurred``, ``noisy``, ``shuffled``: the training subset blurred (Gaussian, sigma S/64),
  with Gaussian noise (std 0.1 on [0, 1]) or with each slice's pixels shuffled: how far
  plainly unrealistic slices land.

Writes ``realism.json`` and ``realism.png`` (bar charts, and each class's first synthetic
slices beside their nearest real training slice in feature space).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from tumorscope.config import ExperimentConfig
from tumorscope.data.records import Record
from tumorscope.errors import ConfigError
from tumorscope.synthesis.realism import frechet_distance, image_features, record_images
from tumorscope.transforms.slice2d import SlicePreprocessing, normalise

DEFAULT_LIMIT = 1000
BASELINES = {"blurred": "Gaussian blur, sigma = size/64 px",
             "noisy": "Gaussian noise, std 0.1 on [0, 1]",
             "shuffled": "each slice's pixels shuffled (same histogram, no structure)"}
LABELS = {"real_train": "real training slices (floor)", "synthetic": "synthetic (pix2pix)",
          "blurred": "real, blurred", "noisy": "real + noise", "shuffled": "real, pixels shuffled"}
NEAREST_PER_CLASS = 3


@dataclass
class Slices:
    """One set of slices: its records, model-size images in [0, 1] and pooled features."""

    records: list[Record]
    images: np.ndarray  # (N, C, S, S) float32
    features: np.ndarray  # (N, D)

    @property
    def labels(self) -> np.ndarray:
        """Class index of each slice."""
        return np.array([r.label for r in self.records])


class FeatureSpace:
    """A 2D slice model read as a feature extractor, with its own preprocessing."""

    def __init__(self, model: nn.Module, pre: SlicePreprocessing, batch_size: int = 32,
                 device: str | None = None) -> None:
        from tumorscope.synthesis.pix2pix import pick_device

        self.device = str(pick_device(device))
        self.model = model.to(self.device).eval()
        self.pre, self.batch_size = pre, batch_size

    def images(self, records: Sequence[Record], what: str, chunk: int = 64) -> np.ndarray:
        """``(N, C, S, S)`` images of ``records`` in [0, 1] at the model's size."""
        from tumorscope.progress import track

        starts = range(0, len(records), chunk)
        return np.concatenate([record_images(records[i:i + chunk], self.pre.input_size,
                                             self.pre.in_channels)
                               for i in track(starts, f"reading {what}", total=len(starts))])

    def features(self, images: np.ndarray) -> np.ndarray:
        """Pooled features ``(N, D)`` of ``(N, C, S, S)`` images in [0, 1]."""
        from tumorscope.models.features import pooled_features

        inputs = np.stack([normalise(im, self.pre.normalization, self.pre.stats)
                           for im in images]).astype(np.float32)
        return image_features(inputs, partial(pooled_features, self.model), self.batch_size,
                              self.device)

    def slices(self, records: Sequence[Record], what: str) -> Slices:
        """Read ``records`` and take their features."""
        images = self.images(records, what)
        return Slices(list(records), images, self.features(images))


def perturbed(images: np.ndarray, how: str, rng: np.random.Generator) -> np.ndarray:
    """``(N, C, S, S)`` images in [0, 1] made plainly unrealistic (see :data:`BASELINES`)."""
    if how == "blurred":
        from scipy.ndimage import gaussian_filter

        sigma = images.shape[-1] / 64
        return np.asarray(gaussian_filter(images, sigma=(0, 0, sigma, sigma)), dtype=np.float32)
    if how == "noisy":
        return np.clip(images + rng.normal(0, 0.1, images.shape), 0, 1).astype(np.float32)
    if how == "shuffled":
        n, c, h, w = images.shape
        order = np.argsort(rng.random((n, 1, h * w)), axis=2)  # one permutation per slice
        return np.take_along_axis(images.reshape(n, c, h * w), order, 2).reshape(images.shape)
    raise ValueError(f"unknown perturbation {how!r}; choose from {list(BASELINES)}")


def _distance(a: np.ndarray, b: np.ndarray) -> float | None:
    """Fréchet distance, or None when a set has fewer than two rows (a covariance of fewer
    rows than features is singular, as in FID: scipy's warning about it is not shown)."""
    import warnings

    from scipy.linalg import LinAlgWarning

    if min(len(a), len(b)) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)
        return frechet_distance(a, b)


def per_class(a: Slices, held_out: Slices, classes: Sequence[str]) -> dict[str, float | None]:
    """Fréchet distance of each class of ``a`` to the same class of the held-out slices."""
    return {name: _distance(a.features[a.labels == c], held_out.features[held_out.labels == c])
            for c, name in enumerate(classes)}


def nearest(synthetic: Slices, real: Slices, per_class_n: int = NEAREST_PER_CLASS
            ) -> list[tuple[int, int, float]]:
    """(synthetic index, nearest real index, feature distance) for each class's first
    ``per_class_n`` synthetic slices (nearest among all ``real`` slices, any class)."""
    pairs = []
    for c in sorted(set(synthetic.labels.tolist())):
        for i in np.flatnonzero(synthetic.labels == c)[:per_class_n]:
            dist = np.linalg.norm(real.features - synthetic.features[i], axis=1)
            j = int(dist.argmin())
            pairs.append((int(i), j, float(dist[j])))
    return pairs


def realism_png(distances: dict[str, float | None], by_class: dict[str, dict[str, float | None]],
                grid: list[tuple[str, np.ndarray, np.ndarray, str]], title: str) -> bytes:
    """Bar charts (overall, per class) above rows of synthetic | nearest real slices."""
    import matplotlib.pyplot as plt

    from tumorscope.reporting.plots import _png  # also selects the headless backend

    classes = list(by_class)
    rows = [[g for g in grid if g[0] == name] for name in classes]
    cols = max([len(r) for r in rows] + [1])
    fig = plt.figure(figsize=(max(10.0, 2.6 * cols), 3.8 + 1.5 * len(classes)),
                     layout="constrained")
    halves = fig.add_gridspec(2, 1, height_ratios=[3.6, 1.5 * len(classes)])
    top, bottom = fig.add_subfigure(halves[0]), fig.add_subfigure(halves[1])
    overall, split = top.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    names = [k for k, v in sorted(distances.items(), key=lambda kv: kv[1] or 0) if v is not None]
    values = [float(distances[k] or 0) for k in names]
    colours = ["#2a9d8f" if k == "real_train" else "#e76f51" if k == "synthetic" else "#adb5bd"
               for k in names]
    overall.barh([LABELS[k] for k in names], values, color=colours)
    for y, v in enumerate(values):
        overall.text(v, y, f" {v:.3g}", va="center", fontsize=8)
    if all(v > 0 for v in values):
        overall.set_xscale("log")
    overall.set_xlabel("Fréchet distance to held-out real slices")
    overall.tick_params(axis="y", labelsize=8)
    x = np.arange(len(classes))
    for k, (key, colour) in enumerate((("real_train", "#2a9d8f"), ("synthetic", "#e76f51"))):
        split.bar(x + (k - 0.5) * 0.38, [by_class[c][key] or 0 for c in classes], width=0.38,
                  color=colour, label=LABELS[key])
    split.set_xticks(x, classes, fontsize=8)
    split.set_title("per class", fontsize=9)
    split.set_ylabel("Fréchet distance", fontsize=8)
    split.legend(fontsize=7)
    axes = bottom.subplots(len(classes), 2 * cols, squeeze=False)
    for row, items, name in zip(axes, rows, classes, strict=True):
        for k, (_, syn, real, real_class) in enumerate(items):
            row[2 * k].imshow(syn[0], cmap="gray", vmin=0, vmax=1)
            row[2 * k + 1].imshow(real[0], cmap="gray", vmin=0, vmax=1)
            row[2 * k + 1].set_title(f"nearest real: {real_class}", fontsize=7)
        for k, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(k < 2 * len(items))
        row[0].set_ylabel(name, fontsize=8)
    bottom.suptitle("synthetic slice | nearest real training slice (pooled features)",
                    fontsize=9)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def realism(checkpoint: str | Path, synthetic_dir: str | Path, cfg: ExperimentConfig,
            out: str | Path, data_root: str | None = None, limit: int = DEFAULT_LIMIT,
            seed: int = 0, batch_size: int = 32, device: str | None = None) -> dict[str, Any]:
    """Compare the synthetic set and baselines with the held-out real slices in the model's
    feature space; write ``realism.json`` and ``realism.png`` to ``out``; return the report."""
    from tumorscope.data import load_index
    from tumorscope.data.prepare import prepare_split, spread
    from tumorscope.data.synthetic import MANIFEST
    from tumorscope.evaluation.embed import slice_model
    from tumorscope.io.writers import write_atomic, write_json
    from tumorscope.synthesis.generate import check_no_leak

    if limit < 2:
        raise ConfigError("--limit", f"{limit}: a covariance needs at least 2 slices per set")
    synthetic_dir = Path(synthetic_dir)
    if not synthetic_dir.is_dir():
        raise ConfigError(synthetic_dir, "synthetic set folder not found (--synthetic: a "
                          "tumorscope synthesize output)")
    syn_index = load_index("synthetic", synthetic_dir)
    model, card, pre = slice_model(checkpoint, "realism")
    index, split = prepare_split(cfg, data_root)
    for where, classes in ((synthetic_dir / "classes.json", syn_index.classes),
                           (f"{index.name} dataset (--config)", index.classes)):
        if list(classes) != list(card.classes):
            raise ConfigError(where, f"classes {list(classes)} differ from the model's "
                              f"{list(card.classes)}")
    check_no_leak(synthetic_dir / MANIFEST, {r.patient for r in split.test})
    if min(len(split.test), len(split.train), len(syn_index.records)) < 2:
        raise ConfigError("data", "the synthetic set and the split's test and training folds "
                          "need at least 2 slices each")
    space = FeatureSpace(model, pre, batch_size, device)
    held_out = space.slices(spread(split.test, limit), "held-out real slices")
    train = space.slices(spread(split.train, limit), "real training slices")
    synthetic = space.slices(spread(syn_index.records, limit), "synthetic slices")
    rng = np.random.default_rng(seed)
    distances: dict[str, float | None] = {
        "real_train": _distance(train.features, held_out.features),
        "synthetic": _distance(synthetic.features, held_out.features),
        **{how: _distance(space.features(perturbed(train.images, how, rng)), held_out.features)
           for how in BASELINES}}
    classes = list(card.classes)
    by_class = {name: {"real_train": floor, "synthetic": syn} for name, floor, syn in zip(
        classes, per_class(train, held_out, classes).values(),
        per_class(synthetic, held_out, classes).values(), strict=True)}
    pairs = nearest(synthetic, train)
    floor, syn = distances["real_train"], distances["synthetic"]
    report: dict[str, Any] = {
        "model": str(checkpoint), "model_name": card.name, "synthetic_dir": str(synthetic_dir),
        "dataset": index.name, "test_fold": split.test_fold, "classes": classes,
        "feature_dim": int(held_out.features.shape[1]), "input_size": pre.input_size,
        "slices": {"held_out": len(held_out.records), "real_train": len(train.records),
                   "synthetic": len(synthetic.records)},
        "held_out_patients": len({r.patient for r in held_out.records}),
        "frechet_vs_held_out": distances,
        "synthetic_over_floor": syn / floor if syn is not None and floor else None,
        "per_class": by_class, "baselines": BASELINES,
        "nearest": [{"synthetic": synthetic.records[i].id, "real": train.records[j].id,
                     "real_class": classes[train.records[j].label], "feature_distance": d}
                    for i, j, d in pairs]}
    grid = [(classes[synthetic.records[i].label], synthetic.images[i], train.images[j],
             classes[train.records[j].label]) for i, j, _ in pairs]
    out = Path(out)
    write_json(out / "realism.json", report)
    title = (f"{card.name}: Fréchet distance of pooled features to {len(held_out.records)} "
             f"held-out real slices (test fold {split.test_fold})")
    png = realism_png(distances, by_class, grid, title)
    write_atomic(out / "realism.png", lambda p: p.write_bytes(png))
    return report

