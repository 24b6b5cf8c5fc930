"""Matplotlib figures for reports, returned as PNG bytes (headless backend)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def confusion_matrix_png(cm: np.ndarray, classes: Sequence[str]) -> bytes:
    """Counts with row-normalised colour (recall per true class)."""
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), n in np.ndenumerate(cm):
        ax.text(j, i, f"{n}\n{norm[i, j]:.0%}", ha="center", va="center",
                color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_title("Confusion matrix")
    return _png(fig)


def histogram_png(values: np.ndarray, title: str, xlabel: str) -> bytes:
    """Histogram on [0, 1] (e.g. Dice of every tumour slice)."""
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.hist(values[np.isfinite(values)], bins=20, range=(0, 1), color="#3a7bd5")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("slices")
    ax.set_title(title)
    return _png(fig)


def training_curves_png(df: pd.DataFrame) -> bytes | None:
    """Loss and validation curves from a run's logged rows (``training.history``); None when
    there are none."""
    if df.empty or "epoch" not in df:
        return None
    by_epoch = df.groupby("epoch").mean(numeric_only=True)
    panels = [c for c in ("train/loss", "val/loss") if c in by_epoch]
    scores = [c for c in ("val/acc", "val/macro_f1", "val/dice") if c in by_epoch]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for col in panels:
        axes[0].plot(by_epoch.index, by_epoch[col], marker="o", label=col)
    for col in scores:
        axes[1].plot(by_epoch.index, by_epoch[col], marker="o", label=col)
    axes[0].set_title("loss")
    axes[1].set_title("validation")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    return _png(fig)


def comparison_png(names: Sequence[str],
                   headlines: Sequence[dict[str, tuple[float, tuple[float, float] | None]]],
                   title: str) -> bytes:
    """Grouped bars: one group per metric (any model's), one bar per model, 95% intervals as
    error bars; a model without a metric has no bar there."""
    metrics = list(dict.fromkeys(m for rows in headlines for m in rows))
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(1.2 + 1.3 * len(metrics), 3.6))
    for k, (name, rows) in enumerate(zip(names, headlines, strict=True)):
        x = np.arange(len(metrics)) + (k - (len(names) - 1) / 2) * width
        values = np.array([rows[m][0] if m in rows else np.nan for m in metrics])
        intervals = [rows[m][1] if m in rows else None for m in metrics]
        errors = np.array([[v - ci[0], ci[1] - v] if ci else [0.0, 0.0]
                           for ci, v in zip(intervals, values, strict=True)]).T
        ax.bar(x, values, width, yerr=errors, capsize=3, label=name)
    ax.set_xticks(range(len(metrics)), metrics, rotation=20, ha="right")
    ax.set_ylim(0, 1.0)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=len(names))
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def image_pairs_png(rows: Sequence[tuple[np.ndarray, np.ndarray, str, str, str]]) -> bytes:
    """Pairs of gray images in [0, 1] side by side, one pair per row: ``(image_a, image_b,
    caption_a, caption_b, title)``; a note when there are none."""
    if not rows:
        fig, ax = plt.subplots(figsize=(5, 1.2))
        ax.text(0.5, 0.5, "no near-duplicate pairs", ha="center", va="center")
        ax.axis("off")
        return _png(fig)
    fig, axes = plt.subplots(len(rows), 2, figsize=(6, 3.3 * len(rows)), squeeze=False)
    for (a, b, caption_a, caption_b, title), pair in zip(rows, axes, strict=True):
        for ax, image, caption in ((pair[0], a, caption_a), (pair[1], b, caption_b)):
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            ax.set_xlabel(caption, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        pair[0].set_title(title, fontsize=9, loc="left")
    fig.tight_layout()
    return _png(fig)


def reliability_png(before: Sequence[dict[str, float | None]],
                    after: Sequence[dict[str, float | None]],
                    ece_before: float, ece_after: float) -> bytes:
    """Reliability diagram: accuracy against confidence per bin, before and after
    temperature scaling, with the diagonal of perfect calibration."""
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1)
    for bins, name, colour in ((before, f"before (ECE {ece_before:.3f})", "tab:red"),
                               (after, f"after (ECE {ece_after:.3f})", "tab:blue")):
        kept = [(b["confidence"], b["accuracy"]) for b in bins
                if b["confidence"] is not None and b["accuracy"] is not None]
        ax.plot([c for c, _ in kept], [a for _, a in kept], marker="o", color=colour,
                label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability, temperature scaling")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)
