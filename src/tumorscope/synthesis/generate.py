"""Draw a synthetic labelled dataset with a trained pix2pix generator, and guard it against
leakage: every synthetic slice names the real slice (and patient) whose outline and mask
conditioned it, so none may come from a patient held out for evaluation.

Layout (read by the ``synthetic`` dataset): ``images/<id>.png``, ``masks/<id>.png``,
``manifest.csv`` (id, label, class, source_id, source_patient), ``classes.json``,
``patients.json`` (the generator's training patients and the conditioning ones) and
``samples.png`` (a grid: rows are classes, the conditioning outline beside each slice).
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tumorscope.data.records import Record
from tumorscope.data.synthetic import MANIFEST, MANIFEST_COLUMNS
from tumorscope.errors import ConfigError
from tumorscope.io.writers import write_atomic, write_json, write_mask_png, write_png
from tumorscope.synthesis.pix2pix import (
    PATIENTS,
    anatomy_map,
    load_generator,
    load_slice,
    pick_device,
    stack_condition,
)

SAMPLES_PER_CLASS = 4


@dataclass
class Drawn:
    """One synthetic slice: what conditioned it and what the generator made of it."""

    id: str
    source: Record
    anatomy: np.ndarray  # (S, S) float32
    mask: np.ndarray  # (S, S) bool
    image: np.ndarray | None = None  # (S, S) float32 in [0, 1]


def pick_sources(records: Sequence[Record], n: int, seed: int) -> list[int]:
    """``n`` record indices, classes taken in turn, each class's slices cycled in a seeded
    order (balanced classes whatever the real class counts)."""
    rng = np.random.default_rng(seed)
    labels = sorted({r.label for r in records})
    orders = {c: rng.permutation([i for i, r in enumerate(records) if r.label == c])
              for c in labels}
    picks = []
    for i in range(n):
        order = orders[labels[i % len(labels)]]
        picks.append(int(order[(i // len(labels)) % len(order)]))
    return picks


def shift_mask(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved by (dy, dx) pixels, zero-filled (no wrap-around)."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        mask[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def jitter(anatomy: np.ndarray, mask: np.ndarray, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    """Mirror the slice half the time and nudge the tumour (up to 1/16 of the side) while it
    stays inside the head; a nudge that would push most of it out is skipped."""
    if rng.random() < 0.5:
        anatomy, mask = anatomy[:, ::-1].copy(), mask[:, ::-1].copy()
    reach = max(1, mask.shape[0] // 16)
    dy, dx = (int(v) for v in rng.integers(-reach, reach + 1, 2))
    moved = shift_mask(mask, dy, dx) & (anatomy > 0)
    return anatomy, moved if moved.sum() >= 0.5 * mask.sum() else mask


def _conditioning(records: Sequence[Record], picks: list[int], size: int, seed: int,
                  jittered: bool) -> Iterator[Drawn]:
    """The (possibly jittered) anatomy map and mask behind each synthetic slice, in turn;
    each source slice is read once."""
    rng = np.random.default_rng([seed, 1])
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i, j in enumerate(picks):
        if j not in cache:
            image, mask = load_slice(records[j], size)
            cache[j] = (anatomy_map(image).astype(np.float16), mask)
        anatomy, mask = jitter(*cache[j], rng) if jittered else cache[j]
        yield Drawn(f"syn-{i:05d}", records[j], anatomy.astype(np.float32), mask)


@torch.no_grad()
def _generate(generator: torch.nn.Module, batch: list[Drawn], num_classes: int,
              device: torch.device) -> None:
    cond = np.stack([stack_condition(d.anatomy, d.mask, d.source.label, num_classes)
                     for d in batch])
    out = generator(torch.from_numpy(cond).to(device)).float().cpu().numpy()[:, 0]
    for d, image in zip(batch, out, strict=True):
        d.image = np.clip((image + 1) / 2, 0, 1)


def _write(folder: Path, d: Drawn) -> None:
    assert d.image is not None
    write_png(folder / "images" / f"{d.id}.png", (d.image * 255).round().astype(np.uint8))
    write_mask_png(folder / "masks" / f"{d.id}.png", d.mask)


def _write_manifest(path: Path, rows: list[list[object]]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(MANIFEST_COLUMNS)
            out.writerows(rows)
    write_atomic(path, write)


def samples_png(drawn: list[Drawn], classes: Sequence[str],
                per_class: int = SAMPLES_PER_CLASS) -> bytes:
    """Rows = classes; each pair of columns is the conditioning outline (tumour mask tinted)
    beside the synthetic slice."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tumorscope.reporting.overlay import overlay

    rows = [[d for d in drawn if d.source.label == c][:per_class] for c in range(len(classes))]
    fig, axes = plt.subplots(len(classes), 2 * per_class, squeeze=False,
                             figsize=(2.4 * per_class, 1.3 * len(classes) + 0.3))
    for c, (row, items) in enumerate(zip(axes, rows, strict=True)):
        for k, d in enumerate(items):
            row[2 * k].imshow(overlay(d.anatomy[None], pred=d.mask))
            row[2 * k + 1].imshow(d.image, cmap="gray", vmin=0, vmax=1)
        for k, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(k < 2 * len(items))
        row[0].set_ylabel(classes[c], fontsize=8)
    fig.suptitle("pix2pix: conditioning outline | synthetic slice", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def refuse_existing(out_dir: Path) -> None:
    """Never write a synthetic dataset over another one."""
    if (out_dir / MANIFEST).exists() or (out_dir / "images").exists():
        raise ConfigError(out_dir, "already holds a synthetic dataset; choose another folder")


def synthesize(generator_dir: Path, records: Sequence[Record], n: int, out_dir: Path,
               seed: int = 0, batch_size: int = 32, jittered: bool = True,
               device: str | None = None) -> Path:
    """Draw ``n`` synthetic slices conditioned on ``records`` (classes balanced, each source
    seeded and optionally jittered) into ``out_dir``, written complete or not at all."""
    from tumorscope.io.writers import atomic_folder
    from tumorscope.progress import track

    if n < 1:
        raise ConfigError("n", f"{n}: the number of synthetic slices must be positive")
    if not records:
        raise ConfigError("records", "no real slices to condition the generator on")
    out_dir = Path(out_dir)
    refuse_existing(out_dir)
    torch_device = pick_device(device)
    generator, settings = load_generator(Path(generator_dir), torch_device)
    classes = list(settings.classes)
    if max(r.label for r in records) >= len(classes):
        raise ConfigError("records", f"labels beyond the generator's classes {classes}")
    drawn = _conditioning(records, pick_sources(records, n, seed), settings.size, seed,
                          jittered)
    kept: list[Drawn] = []  # the first few of each class, for samples.png
    rows: list[list[object]] = []
    with atomic_folder(out_dir) as folder:
        (folder / "images").mkdir()
        (folder / "masks").mkdir()
        for _ in track(range(0, n, batch_size), "synthesising slices", total=-(-n // batch_size)):
            batch = list(itertools.islice(drawn, batch_size))
            _generate(generator, batch, len(classes), torch_device)
            for d in batch:
                _write(folder, d)
                rows.append([d.id, d.source.label, classes[d.source.label], d.source.id,
                             d.source.patient])
                if sum(k.source.label == d.source.label for k in kept) < SAMPLES_PER_CLASS:
                    kept.append(d)
        _write_manifest(folder / MANIFEST, rows)
        write_json(folder / "classes.json", classes)
        write_json(folder / PATIENTS, _patients(Path(generator_dir), rows))
        png = samples_png(kept, classes)
        write_atomic(folder / "samples.png", lambda p: p.write_bytes(png))
    return out_dir


def _patients(generator_dir: Path, rows: list[list[object]]) -> dict[str, list[str]]:
    """The generator's training patients and the patients whose slices conditioned it."""
    path = generator_dir / PATIENTS
    trained = json.loads(path.read_text(encoding="utf-8"))["patients"] if path.is_file() else []
    return {"generator": sorted(trained), "conditioning": sorted({str(r[-1]) for r in rows})}


def check_no_leak(synthetic_manifest: Path, held_out_patients: set[str]) -> None:
    """Raise :class:`ConfigError` naming the file when a synthetic slice was conditioned on,
    or its generator trained on, a held-out patient (``patients.json`` beside the manifest)."""
    synthetic_manifest = Path(synthetic_manifest)
    if not synthetic_manifest.is_file():
        raise ConfigError(synthetic_manifest, "synthetic manifest not found")
    with synthetic_manifest.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if "source_patient" not in (reader.fieldnames or []):
            raise ConfigError(synthetic_manifest, "no source_patient column: not a synthetic "
                              "manifest")
        sources = {row["source_patient"] for row in reader}
    _refuse_overlap(synthetic_manifest, sources & held_out_patients, "conditioned on")
    patients = synthetic_manifest.with_name(PATIENTS)
    if patients.is_file():
        trained = set(json.loads(patients.read_text(encoding="utf-8")).get("generator", []))
        _refuse_overlap(patients, trained & held_out_patients, "generator trained on")


def _refuse_overlap(path: Path, leaked: set[str], how: str) -> None:
    if leaked:
        names = ", ".join(sorted(leaked)[:5]) + (" ..." if len(leaked) > 5 else "")
        raise ConfigError(path, f"leakage: synthetic slices {how} {len(leaked)} held-out "
                          f"patient(s): {names}")
