"""Slice packs: a 2D run's training and validation slices read and resized once, stored
compactly, so that a machine without the raw dataset (a rented GPU) trains the same run.

``tumorscope pack`` writes one; ``data.pack`` trains from it. A pack holds:

- ``pack.json``: the dataset's name and classes, the split settings, the model input it was
  made for, and every record of the split (held-out ones too, without pixels, so that the
  model card still summarises the whole split);
- ``images-NNN.npy.xz``: the training and validation slices at the model's input size, in
  [0, 1] quantised to 8 bits (at most 1/510 from the raw float pixels, the precision of the
  PNG and JPEG files other hospitals share), LZMA-compressed, in as many parts as asked;
- ``masks.npy.xz``: their masks, one bit per pixel.

The held-out fold's pixels never enter a pack. Reading one never unpickles anything.
"""

from __future__ import annotations

import io
import itertools
import json
import lzma
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from tumorscope.config import ClassifyExperiment, JointExperiment, expand_env
from tumorscope.data.prepare import keep_sources
from tumorscope.data.records import DatasetIndex, Record
from tumorscope.data.splits import Split, uses_shipped_folds
from tumorscope.errors import ConfigError, ScanReadError
from tumorscope.io.writers import atomic_folder
from tumorscope.transforms.framing import STRETCH

FORMAT = 1
MANIFEST = "pack.json"
MASKS = "masks.npy.xz"
ROLES = ("train", "val", "test")
SliceExperiment = JointExperiment | ClassifyExperiment


def pack_settings(cfg: SliceExperiment) -> dict[str, Any]:
    """What a pack must agree on with the run that trains from it."""
    d, m = cfg.data, cfg.model
    return {"dataset": d.dataset, "folds": d.folds, "test_fold": d.test_fold,
            "val_fold": d.val_fold, "fold_source": d.fold_source, "seed": cfg.seed,
            "sources": d.sources, "limit_per_split": d.limit_per_split,
            "input_size": m.input_size, "in_channels": m.in_channels, "framing": m.framing}


@dataclass
class SlicePack:
    """A pack in memory: its index and split, and the pixels of its packed slices."""

    folder: Path
    index: DatasetIndex
    split: Split
    images: np.ndarray  # (N, C, S, S) uint8
    masks: np.ndarray  # (N, S, S) bool
    rows: dict[str, int]

    def item(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        """``(C,S,S)`` float16 image in [0, 1] and ``(S,S)`` uint8 mask of a packed record."""
        row = self.rows.get(record.id)
        if row is None:
            raise ScanReadError(self.folder, f"slice {record.id} is not in this pack (held-out "
                                "slices never are)")
        image = (self.images[row].astype(np.float32) / 255.0).astype(np.float16)
        return image, self.masks[row].astype(np.uint8)


def quantise(image: np.ndarray) -> np.ndarray:
    """[0, 1] pixels as 8-bit integers."""
    return np.rint(np.clip(image.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def write_pack(cfg: SliceExperiment, index: DatasetIndex, split: Split, out: Path,
               parts: int = 1) -> Path:
    """Read the split's training and validation slices at the model's input size and write
    them to ``out`` (a new folder; written beside it, then renamed, so a kill leaves none)."""
    from tumorscope.data.slices import SliceDataset
    from tumorscope.progress import track

    if out.exists():
        raise ConfigError(out, "already exists; choose a new folder for the pack")
    m = cfg.model
    packed = [*split.train, *split.val]
    every = [*packed, *split.test]
    if len({r.id for r in every}) != len(every):
        raise ScanReadError(index.root, "two slices share a record id; a pack keys pixels by id")
    dataset = SliceDataset(packed, m.in_channels, m.input_size, m.normalization,
                           framing=m.framing)
    images = np.empty((len(packed), m.in_channels, m.input_size, m.input_size), np.uint8)
    masks = np.empty((len(packed), m.input_size, m.input_size), bool)
    for i in track(range(len(packed)), "packing slices", total=len(packed)):
        image, mask = dataset.resized(i)
        images[i], masks[i] = quantise(image), mask > 0
    roles = {**dict.fromkeys((r.id for r in split.test), "test"),
             **dict.fromkeys((r.id for r in split.val), "val"),
             **dict.fromkeys((r.id for r in split.train), "train")}
    try:
        with atomic_folder(out) as tmp:
            bounds = np.linspace(0, len(packed), max(1, min(parts, len(packed))) + 1).astype(int)
            part_files = []
            for k, (lo, hi) in track(list(enumerate(itertools.pairwise(bounds))),
                                     "compressing parts"):
                name = f"images-{k:03d}.npy.xz"
                _write_array(tmp / name, images[lo:hi])
                part_files.append({"file": name, "rows": int(hi - lo)})
            _write_array(tmp / MASKS, np.packbits(masks, axis=-1))
            manifest = {"format": FORMAT, "settings": pack_settings(cfg), "name": index.name,
                        "classes": index.classes, "info": _plain(index.info),
                        "intensity": "per-image min-max to [0, 1], resized, quantised to 8 bits",
                        "parts": part_files,
                        "records": [{**_record_fields(r), "role": roles[r.id]} for r in every]}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    except OSError as err:
        raise ScanReadError(out, f"cannot write the pack ({err.strerror or err})") from None
    return out


_last: dict[tuple[str, int, str], SlicePack] = {}


def read_pack(cfg: SliceExperiment) -> SlicePack:
    """The pack named by ``data.pack``, checked against the run's settings (the last one read
    is kept: the split and the loaders read the same pack)."""
    folder = pack_folder(cfg)
    path = folder / MANIFEST
    key = (str(folder.resolve()), path.stat().st_mtime_ns if path.is_file() else 0,
           json.dumps(pack_settings(cfg), sort_keys=True))
    if key not in _last:
        _last.clear()
        _last[key] = _read_pack(cfg, folder)
    return _last[key]


def pack_folder(cfg: SliceExperiment) -> Path:
    """``data.pack`` as a path (``${VAR}`` expanded)."""
    return Path(expand_env(str(cfg.data.pack))).expanduser()


def _read_pack(cfg: SliceExperiment, folder: Path) -> SlicePack:
    path = folder / MANIFEST
    if not path.is_file():
        raise ConfigError("data.pack", f"{path} not found (make one with `tumorscope pack`, "
                          "or set data.pack=null to read the dataset)")
    manifest = _manifest(path)
    theirs, ours = manifest["settings"], pack_settings(cfg)
    theirs.setdefault("framing", STRETCH)  # packs made before framing existed squashed
    # a pack of every dataset may serve a run on some of them (leave-one-dataset-out)
    widened = theirs.get("sources") is None and ours["sources"] is not None
    differ = sorted(k for k in ours if theirs.get(k) != ours[k]
                    and not (k == "sources" and widened))
    if differ:
        raise ConfigError("data.pack", f"{folder} was packed for other settings: "
                          + "; ".join(f"{k} {theirs.get(k)!r} there, {ours[k]!r} here"
                                      for k in differ))
    by_role = _records(manifest, folder, path)
    packed = [*by_role["train"], *by_role["val"]]
    images, masks = _pixels(folder, manifest, len(packed), cfg.model.in_channels,
                            cfg.model.input_size)
    rows = {r.id: i for i, r in enumerate(packed)}
    index = keep_sources(DatasetIndex(manifest["name"], folder, list(manifest["classes"]),
                                      [*packed, *by_role["test"]],
                                      {**manifest["info"], "pack": str(folder)}),
                         cfg.data.sources)
    if widened and (cfg.data.limit_per_split or not uses_shipped_folds(
            index, cfg.data.folds, cfg.data.fold_source)):
        # computed folds depend on which patients are split: only shipped ones survive a subset
        raise ConfigError("data.pack", f"{folder} holds every dataset; a run on "
                          f"{ours['sources']} splits its patients differently (computed folds "
                          "or limit_per_split): pack with the same data.sources")
    kept = {r.id for r in index.records}
    train, val, test = ([r for r in by_role[role] if r.id in kept] for role in ROLES)
    split = Split(train, val, test, cfg.data.test_fold, cfg.data.val_fold)
    return SlicePack(folder, index, split, images, masks, rows)


def _manifest(path: Path) -> dict[str, Any]:
    """The manifest, its structure checked."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ScanReadError(path, f"not a readable pack manifest ({err})") from None
    kinds = {"format": int, "settings": dict, "name": str, "classes": list, "info": dict,
             "parts": list, "records": list}
    if not isinstance(manifest, dict) or any(not isinstance(manifest.get(k), t)
                                             for k, t in kinds.items()):
        raise ScanReadError(path, "not a tumorscope pack manifest (needs " + ", ".join(
            f"{k}: {t.__name__}" for k, t in kinds.items()) + ")")
    if manifest["format"] != FORMAT:
        raise ScanReadError(path, f"pack format {manifest['format']!r}; this version "
                            f"reads format {FORMAT}")
    parts = manifest["parts"]
    if not parts or not all(isinstance(p, dict) and isinstance(p.get("file"), str)
                            and Path(p["file"]).name == p["file"]
                            and isinstance(p.get("rows"), int) for p in parts):
        raise ScanReadError(path, "pack parts must name files in the pack's folder, with rows")
    return cast(dict[str, Any], manifest)


def _records(manifest: dict[str, Any], folder: Path, path: Path) -> dict[str, list[Record]]:
    """The manifest's records by role, each checked."""
    by_role: dict[str, list[Record]] = {role: [] for role in ROLES}
    n_classes = len(manifest["classes"])
    for fields in manifest["records"]:
        try:
            fields = dict(fields)
            role = fields.pop("role")
            record = Record(**{**fields, "image": folder / str(fields["id"]), "mask": None})
        except (KeyError, TypeError, ValueError) as err:
            raise ScanReadError(path, f"not a tumorscope pack manifest (a record: {err})"
                                ) from None
        if (role not in by_role or not isinstance(record.id, str)
                or not isinstance(record.label, int) or not 0 <= record.label < n_classes):
            raise ScanReadError(path, f"record {record.id!r}: role {role!r} or label "
                                f"{record.label!r} is not one of this pack's")
        by_role[role].append(record)
    ids = [r.id for records in by_role.values() for r in records]
    if len(set(ids)) != len(ids):
        raise ScanReadError(path, "two records share an id")
    return by_role


def _pixels(folder: Path, manifest: dict[str, Any], count: int, channels: int, size: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """The packed images ``(N, C, S, S)`` uint8 and masks ``(N, S, S)`` bool, shapes checked."""
    parts = []
    for part in manifest["parts"]:
        array = _read_array(folder / part["file"])
        if array.dtype != np.uint8 or array.shape != (part["rows"], channels, size, size):
            raise ScanReadError(folder / part["file"], f"holds {array.dtype} {array.shape}, "
                                f"not uint8 ({part['rows']}, {channels}, {size}, {size})")
        parts.append(array)
    images = np.concatenate(parts)
    packed_masks = _read_array(folder / MASKS)
    want = (count, size, -(-size // 8))
    if packed_masks.dtype != np.uint8 or packed_masks.shape != want:
        raise ScanReadError(folder / MASKS, f"holds {packed_masks.dtype} {packed_masks.shape}, "
                            f"not uint8 {want}")
    if len(images) != count:
        raise ScanReadError(folder, f"{len(images)} images for {count} packed slices; the "
                            "pack is incomplete")
    return images, np.unpackbits(packed_masks, axis=-1, count=size).astype(bool)


def _record_fields(record: Record) -> dict[str, Any]:
    fields = asdict(replace(record, image=Path(), mask=None))
    del fields["image"], fields["mask"]
    return fields


def _plain(info: dict[str, object]) -> dict[str, object]:
    """``info`` with what JSON cannot hold written as text."""
    return json.loads(json.dumps(info, default=str))


def _write_array(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    path.write_bytes(lzma.compress(buffer.getvalue(), preset=6))


def _read_array(path: Path) -> np.ndarray:
    try:
        return np.load(io.BytesIO(lzma.decompress(path.read_bytes())), allow_pickle=False)
    except (OSError, ValueError, lzma.LZMAError) as err:
        raise ScanReadError(path, f"unreadable pack part ({err})") from None
