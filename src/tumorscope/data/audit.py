"""Data audit (``tumorscope check-data``): near-duplicate images within and across folds and
datasets, exact copies, and label conflicts (one image under two labels).

Every image becomes a fingerprint: grayscale, min-max scaled, shrunk to ``SIZE`` x ``SIZE``
(area averaging), its smooth part (a Gaussian blur of ``BLUR`` px) subtracted and the rest
z-normalised, so the dot product of two fingerprints is the Pearson correlation of the shrunk
images' detail. Without the blur the head's outline dominates and different patients' similar
slices correlate as highly as copies (docs/data-audit.md measures both). Pairs at or above a
threshold are found with blocked matrix products, directly and against each image's
left-right mirror, and each pair gets a ``kind``: ``label-conflict`` (near-identical, labels
differ), ``cross-dataset``, ``cross-fold`` (a leak for patient-level cross-validation),
``same-fold`` (two patients, one image) or ``same-patient`` (usually neighbouring slices).
"""

from __future__ import annotations

import csv
import hashlib
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from tumorscope.data.records import DatasetIndex, Record
from tumorscope.data.slices import load_record
from tumorscope.data.splits import assign_folds
from tumorscope.errors import ScanReadError

SIZE = 32
BLUR = 1.5  # sigma (px at SIZE) of the smooth part removed from a fingerprint
THRESHOLD = 0.95
REVIEW = 0.05  # pairs this far below the threshold are kept as "closest below" for review
FOLDS, SEED = 5, 42  # the project's defaults (data.folds, seed)
KINDS = ("label-conflict", "cross-dataset", "cross-fold", "same-fold", "same-patient")
PAIR_COLUMNS = ("id_a", "id_b", "dataset_a", "dataset_b", "patient_a", "patient_b", "fold_a",
                "fold_b", "label_a", "label_b", "correlation", "mirrored", "exact", "relation",
                "kind")
T = TypeVar("T")


@dataclass(frozen=True)
class Item:
    """One audited image: its record, dataset, fold and class name."""

    dataset: str
    record: Record
    fold: int
    label: str


@dataclass(frozen=True)
class Pair:
    """Two near-identical images (indices into the audit's items, ``a < b``)."""

    a: int
    b: int
    correlation: float
    mirrored: bool  # found only against the left-right mirror of one image
    exact: str  # "bytes", "pixels" (same pixels, other bytes) or ""
    relation: str  # same-patient | same-fold | cross-fold | cross-dataset
    kind: str  # the relation, or label-conflict


@dataclass
class Audit:
    """Everything ``check-data`` found, plus what it needs to describe it."""

    items: list[Item]
    pairs: list[Pair]
    blank: list[int]  # images without contrast: never compared
    threshold: float
    datasets: dict[str, dict[str, Any]]  # name -> root, classes, fold source, counts
    distinct_pixels: dict[str, int]  # per dataset: images with distinct pixels
    below: list[Pair]  # the closest pairs of two patients under the threshold (for review)


def _progress(items: Iterable[T], description: str, total: int) -> Iterator[T]:
    """A progress bar on a terminal; plain iteration in logs, so an error stays one line."""
    if not sys.stderr.isatty():
        yield from items
        return
    from tumorscope.progress import track

    yield from track(items, description, total)


def fingerprint(pixels: np.ndarray, size: int = SIZE, blur: float | None = BLUR
                ) -> np.ndarray | None:
    """``(size*size,)`` float32 vector of unit norm (None for an image without contrast);
    ``blur=None`` keeps the smooth part (the plain fingerprint)."""
    import cv2

    gray = pixels.astype(np.float32)
    gray = gray.mean(axis=0) if gray.ndim == 3 else gray
    lo, hi = float(gray.min()), float(gray.max())
    if hi <= lo:
        return None
    small = cv2.resize((gray - lo) / (hi - lo), (size, size), interpolation=cv2.INTER_AREA)
    if blur is not None:
        small = small - cv2.GaussianBlur(small, (0, 0), blur)
    small = small.ravel()
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return (small / norm).astype(np.float32) if norm > 1e-6 else None


def mirror(prints: np.ndarray, size: int = SIZE) -> np.ndarray:
    """The fingerprints of the left-right mirrored images."""
    return np.ascontiguousarray(prints.reshape(-1, size, size)[:, :, ::-1].reshape(len(prints), -1))


def similar_pairs(prints: np.ndarray, threshold: float, size: int = SIZE,
                  block: int | None = None) -> Iterator[tuple[int, int, float, bool]]:
    """``(i, j, correlation, mirrored)`` for every ``i < j`` whose correlation, direct or with
    one image mirrored, is at least ``threshold``; rows in blocks bound the memory."""
    n = len(prints)
    flipped = mirror(prints, size)
    block = block or max(64, min(1024, 16_000_000 // max(n, 1)))
    starts = range(0, n, block)
    for s in _progress(starts, f"comparing {n} images", len(starts)):
        rows = prints[s:s + block]
        direct = rows @ prints[s:].T
        best = np.maximum(direct, rows @ flipped[s:].T)
        r, c = np.nonzero(best >= threshold)
        keep = c > r  # columns start at image s: the upper triangle, no self-matches
        for i, j in zip(r[keep].tolist(), c[keep].tolist(), strict=True):
            yield s + i, s + j, float(best[i, j]), bool(direct[i, j] < threshold)


def _conflict(a: Item, b: Item, classes: dict[str, list[str]]) -> bool:
    """Different class names that both datasets know (so "glioma" vs "tumour" is none)."""
    shared = set(classes[a.dataset]) & set(classes[b.dataset])
    return a.label != b.label and a.label in shared and b.label in shared


def relation(a: Item, b: Item) -> str:
    """same-patient, same-fold, cross-fold or cross-dataset."""
    if a.dataset != b.dataset:
        return "cross-dataset"
    if a.record.patient == b.record.patient:
        return "same-patient"
    return "same-fold" if a.fold == b.fold else "cross-fold"


def classify(a: Item, b: Item, exact: bool, classes: dict[str, list[str]]) -> tuple[str, str]:
    """``(relation, kind)``; neighbouring slices of one patient whose mask-derived labels
    differ are no conflict, an exact copy under two labels always is."""
    rel = relation(a, b)
    if _conflict(a, b, classes) and (rel != "same-patient" or exact):
        return rel, "label-conflict"
    return rel, rel


def load_items(indexes: Sequence[DatasetIndex], limit: int | None = None,
               folds: int = FOLDS, seed: int = SEED) -> tuple[list[Item], dict[str, Any]]:
    """Items of every dataset and a description of each. Folds: the shipped ones when every
    record has one, else ``patient_folds`` (fewer when there are fewer patients), assigned on
    the whole dataset before the first ``limit`` records are kept."""
    items: list[Item] = []
    described: dict[str, Any] = {}
    for index in indexes:
        shipped = all(r.fold is not None for r in index.records)
        patients = {r.patient for r in index.records}
        # the shipped split as it is (whatever its count); else computed, fewer for a tiny set
        n_folds = len({r.fold for r in index.records}) if shipped \
            else min(folds, len(patients))
        fold_of = (assign_folds(index, n_folds, seed, "dataset") if n_folds > 1
                   else dict.fromkeys(patients, 0))
        records = index.records[:limit] if limit else index.records
        items += [Item(index.name, r, fold_of[r.patient], index.classes[r.label])
                  for r in records]
        described[index.name] = {
            "root": str(index.root), "classes": list(index.classes), "images": len(records),
            "patients": len({r.patient for r in records}),
            "folds": "shipped" if shipped else f"computed ({n_folds} folds, seed {seed})"}
    return items, described


def read_fingerprints(items: Sequence[Item]) -> tuple[np.ndarray, list[str], list[str]]:
    """Fingerprints (zero rows for blank images), file hashes and pixel hashes."""
    prints = np.zeros((len(items), SIZE * SIZE), dtype=np.float32)
    file_hashes, pixel_hashes = [], []
    for i, item in enumerate(_progress(items, f"reading {len(items)} images", len(items))):
        path = item.record.image
        pixels = load_record(item.record)[0]
        if pixels.ndim > 3:
            raise ScanReadError(path, f"not a 2D image (shape {pixels.shape})")
        vector = fingerprint(pixels)
        if vector is not None:
            prints[i] = vector
        file_hashes.append(hashlib.sha256(path.read_bytes()).hexdigest())
        pixel_hashes.append(hashlib.sha256(f"{pixels.shape}{pixels.dtype}".encode()
                                           + np.ascontiguousarray(pixels).tobytes()).hexdigest())
    return prints, file_hashes, pixel_hashes


def find_pairs(items: Sequence[Item], prints: np.ndarray, file_hashes: Sequence[str],
               pixel_hashes: Sequence[str], classes: dict[str, list[str]],
               threshold: float = THRESHOLD, closest: int = 10) -> tuple[list[Pair], list[Pair]]:
    """Near-duplicate pairs plus every exact copy (identical bytes or pixels), classified,
    and per pair of datasets the ``closest`` pairs of two patients within ``REVIEW`` below the
    threshold."""
    blank = np.asarray(~prints.any(axis=1))
    found = {(i, j): (c, m) for i, j, c, m in
             similar_pairs(prints, max(threshold - REVIEW, 0.0) if closest else threshold)}
    groups: dict[str, list[int]] = {}
    for i, h in enumerate(pixel_hashes):
        if not blank[i]:
            groups.setdefault(h, []).append(i)
    for members in groups.values():  # exact copies, whatever the threshold
        for x, i in enumerate(members):
            for j in members[x + 1:]:
                found.setdefault((i, j), (float(prints[i] @ prints[j]), False))
    pairs, below = [], []
    for (i, j), (corr, mirrored) in sorted(found.items()):
        same = pixel_hashes[i] == pixel_hashes[j]
        exact = "bytes" if same and file_hashes[i] == file_hashes[j] else "pixels" if same else ""
        rel, kind = classify(items[i], items[j], bool(exact), classes)
        pair = Pair(i, j, min(corr, 1.0), mirrored and not exact, exact, rel, kind)
        if exact or corr >= threshold:
            pairs.append(pair)
        elif rel != "same-patient":
            below.append(pair)
    by_datasets: dict[tuple[str, str], list[Pair]] = {}
    for pair in sorted(below, key=lambda p: -p.correlation):
        group = by_datasets.setdefault((items[pair.a].dataset, items[pair.b].dataset), [])
        if len(group) < closest:
            group.append(pair)
    return pairs, sorted((p for g in by_datasets.values() for p in g), key=lambda p: -p.correlation)


def audit(indexes: Sequence[DatasetIndex], threshold: float = THRESHOLD,
          limit: int | None = None) -> Audit:
    """Fingerprint every image of ``indexes`` and find its near-duplicates."""
    items, described = load_items(indexes, limit)
    prints, file_hashes, pixel_hashes = read_fingerprints(items)
    classes = {name: d["classes"] for name, d in described.items()}
    pairs, below = find_pairs(items, prints, file_hashes, pixel_hashes, classes, threshold)
    blank = [int(i) for i in np.flatnonzero(~prints.any(axis=1))]
    distinct = {name: len({h for h, it in zip(pixel_hashes, items, strict=True)
                           if it.dataset == name}) for name in described}
    return Audit(items, pairs, blank, threshold, described, distinct, below)


def pair_row(audit: Audit, pair: Pair) -> dict[str, object]:
    """One row of ``pairs.csv``."""
    a, b = audit.items[pair.a], audit.items[pair.b]
    return {"id_a": a.record.id, "id_b": b.record.id, "dataset_a": a.dataset,
            "dataset_b": b.dataset, "patient_a": a.record.patient, "patient_b": b.record.patient,
            "fold_a": a.fold, "fold_b": b.fold, "label_a": a.label, "label_b": b.label,
            "correlation": round(pair.correlation, 4), "mirrored": pair.mirrored,
            "exact": pair.exact, "relation": pair.relation, "kind": pair.kind}


def _components(n: int, edges: Iterable[tuple[int, int]]) -> list[int]:
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in edges:
        parent[root(i)] = root(j)
    return [root(i) for i in range(n)]


def summarise(audit: Audit) -> dict[str, Any]:
    """Counts for ``summary.json`` and the report: per kind, per dataset pair, exact copies,
    images involved, and distinct images per dataset."""
    pairs, items = audit.pairs, audit.items
    by_kind = Counter(p.kind for p in pairs)
    involved = {k: len({i for p in pairs if p.kind == k for i in (p.a, p.b)}) for k in KINDS}
    by_datasets: dict[str, Counter[str]] = {}
    for p in pairs:
        key = "/".join(sorted({items[p.a].dataset, items[p.b].dataset}))
        by_datasets.setdefault(key, Counter())[p.kind] += 1
    # images that are the same picture under several patients/datasets count once
    roots = _components(len(items), ((p.a, p.b) for p in pairs if p.relation != "same-patient"))
    datasets = {}
    for name, info in audit.datasets.items():
        members = [i for i, it in enumerate(items) if it.dataset == name]
        datasets[name] = {**info, "blank_images": sum(items[i].dataset == name
                                                      for i in audit.blank),
                          "distinct_pixels": audit.distinct_pixels[name],
                          "distinct_across_patients": len({roots[i] for i in members})}
    return {
        "threshold": audit.threshold,
        "fingerprint": f"grayscale, min-max, {SIZE}x{SIZE} INTER_AREA, minus its Gaussian "
                       f"blur (sigma {BLUR} px), z-normalised; also against the left-right "
                       "mirror",
        "images": len(items), "blank_images": len(audit.blank), "pairs": len(pairs),
        "by_kind": {k: by_kind[k] for k in KINDS},
        "images_involved": involved,
        "mirrored": {k: sum(p.mirrored for p in pairs if p.kind == k) for k in KINDS},
        "exact_bytes": {k: sum(p.exact == "bytes" for p in pairs if p.kind == k) for k in KINDS},
        "exact_pixels": {k: sum(p.exact == "pixels" for p in pairs if p.kind == k)
                         for k in KINDS},
        "label_conflicts_by_relation": dict(Counter(p.relation for p in pairs
                                                    if p.kind == "label-conflict")),
        "same_patient_labels_differ": sum(p.kind == "same-patient"
                                          and items[p.a].label != items[p.b].label
                                          for p in pairs),
        "by_datasets": {k: {kind: v[kind] for kind in KINDS}
                        for k, v in sorted(by_datasets.items())},
        "datasets": datasets,
        "closest_below_threshold": [pair_row(audit, p) for p in audit.below],
    }


def worst(audit: Audit, n: int, per_kind: int | None = None) -> list[Pair]:
    """The most serious pairs: by kind (label conflicts first), then highest correlation;
    a few neighbouring slices of one patient only when nothing else was found."""
    chosen: list[Pair] = []
    for kind in KINDS:
        if kind == "same-patient" and chosen:
            break
        ranked = sorted((p for p in audit.pairs if p.kind == kind),
                        key=lambda p: (p.exact == "", -p.correlation, p.a, p.b))
        chosen += ranked[:per_kind or n]
    return chosen[:n] if chosen[:1] and chosen[0].kind != "same-patient" else chosen[:min(n, 6)]


def _thumbnail(item: Item, size: int = 160) -> np.ndarray:
    import cv2

    gray = load_record(item.record)[0].astype(np.float32)
    gray = gray.mean(axis=0) if gray.ndim == 3 else gray
    gray = (gray - gray.min()) / max(float(gray.max() - gray.min()), 1e-6)
    return np.asarray(cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA))


def examples_png(audit: Audit, pairs: Sequence[Pair]) -> bytes:
    """The pairs side by side, each titled with dataset, patient, fold and label."""
    from tumorscope.reporting.plots import image_pairs_png

    def caption(item: Item) -> str:
        return (f"{item.dataset} {item.record.id}\npatient {item.record.patient}, "
                f"fold {item.fold}, {item.label}")

    rows = [(_thumbnail(audit.items[p.a]), _thumbnail(audit.items[p.b]),
             caption(audit.items[p.a]), caption(audit.items[p.b]),
             f"{p.kind}: r = {p.correlation:.3f}" + (", mirrored" if p.mirrored else "")
             + (f", identical {p.exact}" if p.exact else "")) for p in pairs]
    return image_pairs_png(rows)


def _pair_table(audit: Audit, pairs: Sequence[Pair]) -> list[str]:
    lines = ["| kind | correlation | a: dataset/id, patient, fold, label | b | mirrored | exact |",
             "| --- | ---: | --- | --- | --- | --- |"]
    for p in pairs:
        a, b = audit.items[p.a], audit.items[p.b]
        lines.append(f"| {p.kind} | {p.correlation:.4f} | {a.dataset}/{a.record.id}, "
                     f"{a.record.patient}, {a.fold}, {a.label} | {b.dataset}/{b.record.id}, "
                     f"{b.record.patient}, {b.fold}, {b.label} | "
                     f"{'yes' if p.mirrored else ''} | {p.exact} |")
    return lines


def report_markdown(audit: Audit, summary: dict[str, Any], command: str | None = None) -> str:
    """``report.md``: counts per kind and dataset pair, the datasets, the worst examples."""
    s = summary
    lines = ["# Data audit", "",
             f"{s['images']} images, near-duplicate threshold: correlation >= "
             f"{s['threshold']} ({s['fingerprint']}). {s['blank_images']} blank image(s) "
             "(no contrast) were not compared.", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += ["## Datasets", "", "| dataset | images | patients | folds | distinct pixels | "
              "distinct across patients | blank |",
              "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for name, d in s["datasets"].items():
        lines.append(f"| {name} | {d['images']} | {d['patients']} | {d['folds']} | "
                     f"{d['distinct_pixels']} | {d['distinct_across_patients']} | "
                     f"{d['blank_images']} |")
    lines += ["", "## Pairs by kind", "",
              "| kind | pairs | images involved | mirrored | identical bytes | identical pixels |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for k in KINDS:
        lines.append(f"| {k} | {s['by_kind'][k]} | {s['images_involved'][k]} | "
                     f"{s['mirrored'][k]} | {s['exact_bytes'][k]} | {s['exact_pixels'][k]} |")
    lines += ["", "`same-patient` pairs are mostly neighbouring slices of one volume: expected. "
              "`cross-fold` pairs leak between training and test folds of patient-level "
              "cross-validation; `same-fold` pairs are one image under two patient ids; "
              "`label-conflict` pairs are near-identical images with different labels "
              f"(by relation: {s['label_conflicts_by_relation'] or 'none'}).", ""]
    if s["by_datasets"]:
        lines += ["## Pairs by dataset", "", "| datasets | " + " | ".join(KINDS) + " |",
                  "| --- |" + " ---: |" * len(KINDS)]
        for key, counts in s["by_datasets"].items():
            lines.append(f"| {key} | " + " | ".join(str(counts[k]) for k in KINDS) + " |")
        lines.append("")
    shown = worst(audit, 20)
    lines += ["## Worst examples", ""]
    if shown:
        lines += [*_pair_table(audit, shown), "", "![example pairs](examples.png)", ""]
    else:
        lines += ["No near-duplicate pairs.", ""]
    if audit.below:
        lines += [f"## Closest pairs of two patients below the threshold (r >= "
                  f"{max(audit.threshold - REVIEW, 0):.2f}, up to 10 per pair of datasets; not "
                  "counted above, for review)", "",
                  *_pair_table(audit, audit.below), ""]
    lines += ["All pairs: `pairs.csv`; counts: `summary.json`.", ""]
    return "\n".join(lines)


def write_audit(audit: Audit, folder: Path, command: str | None = None) -> dict[str, Any]:
    """Write ``pairs.csv``, ``summary.json``, ``report.md`` and ``examples.png`` into a fresh
    ``folder`` (the caller renames it into place); return the summary."""
    from tumorscope.io.writers import write_json

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "pairs.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=PAIR_COLUMNS)
        writer.writeheader()
        for pair in sorted(audit.pairs, key=lambda p: (KINDS.index(p.kind), -p.correlation)):
            writer.writerow(pair_row(audit, pair))
    summary = summarise(audit)
    write_json(folder / "summary.json", summary)
    (folder / "report.md").write_text(report_markdown(audit, summary, command), encoding="utf-8")
    (folder / "examples.png").write_bytes(examples_png(audit, worst(audit, 8, per_kind=3)))
    return summary
