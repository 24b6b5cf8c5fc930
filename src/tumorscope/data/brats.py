"""BraTS as a dataset: one record per case folder with a segmentation (cases without one are
listed in ``info`` and left out of training), and the training cache ``tumorscope prepare``
builds once: each case preprocessed (transforms/volume3d.py) into its own HDF5 file with
the network-grid volume, its labels and, for 2D models, the index of overlapping axial
patches that show tumour (background-only ones discarded but for a configured share).

Each case file is written to a temporary name and renamed when complete, so an interrupted
``prepare`` resumes where it stopped and never leaves a half-written case behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tumorscope.config import BratsExperiment
from tumorscope.data.records import DatasetIndex, Record
from tumorscope.data.registry import register_dataset
from tumorscope.errors import ConfigError, ScanReadError
from tumorscope.io.brats import EXTENSIONS, MODALITIES, find_case_files, read_case
from tumorscope.transforms.volume3d import VolumePreprocessing

CACHE_FORMAT = "tumorscope-brats-cache/1"
SETTINGS = "settings.json"


@register_dataset("brats")
def load_brats(root: Path) -> DatasetIndex:
    """Every case folder under ``root`` (either naming); labelled ones become records."""
    if not root.is_dir():
        raise ScanReadError(root, "BraTS folder not found")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and any(
        f.name.lower().endswith(EXTENSIONS) for f in p.iterdir()))
    records, unlabelled = [], []
    for folder in folders:
        case_id, _, files = find_case_files(folder)
        if "seg" not in files:
            unlabelled.append(case_id)
            continue
        records.append(Record(id=case_id, image=folder, mask=files["seg"], label=0,
                              patient=case_id))
    if not records:
        raise ScanReadError(root, "no BraTS case folder with a segmentation")
    return DatasetIndex("brats", root, ["tumour"], records,
                        {"split": "computed (by case)", "unlabelled": unlabelled})


def preprocessing(cfg: BratsExperiment) -> VolumePreprocessing:
    """The config's preprocessing as the transform (and the card's section)."""
    spacing = cfg.prep.spacing
    return VolumePreprocessing(clip_percentiles=cfg.prep.clip_percentiles,
                               margin=cfg.prep.margin,
                               spacing=tuple(spacing) if spacing else None)  # type: ignore[arg-type]


def card_preprocessing(cfg: BratsExperiment, stats: object = None) -> dict[str, object]:
    """The card's ``preprocessing`` section: modality order and the volume transform."""
    return {"modalities": list(cfg.model.modalities), "all_modalities": list(MODALITIES),
            "missing_modality": cfg.prep.missing_modality, "label_map": cfg.prep.label_map,
            **preprocessing(cfg).model_dump(mode="json")}


def cache_settings(cfg: BratsExperiment) -> dict[str, object]:
    """What a cache depends on: a cache built with other settings is never reused."""
    prep = cfg.prep.model_dump(mode="json", exclude={"cache_dir", "foreground_ratio",
                                                     "samples_per_case"})
    patch = cfg.model.patch_size if cfg.model.family == "2d" else None
    return {"format": CACHE_FORMAT, "modalities": list(cfg.model.modalities), "prep": prep,
            "patch_2d": patch, "seed": cfg.seed}


@dataclass
class CachedCase:
    """One preprocessed case: ``image`` (C, X, Y, Z) float32 on the network grid."""

    case_id: str
    image: np.ndarray
    labels: np.ndarray
    patches: np.ndarray  # (N, 3) int32: z, x0, y0 of 2D patches kept (empty for 3D)


def patch_index(labels: np.ndarray, size: int, stride: int, keep_background: float,
                seed: int) -> np.ndarray:
    """Overlapping ``size``-square patches of every axial slice (last axis); those without
    tumour are kept with probability ``keep_background`` (seeded)."""
    rng = np.random.default_rng(seed)

    def starts(n: int) -> list[int]:
        last = max(n - size, 0)
        return sorted({*range(0, last + 1, stride), last})

    kept = []
    for z in range(labels.shape[2]):
        plane = labels[:, :, z]
        for x0 in starts(plane.shape[0]):
            for y0 in starts(plane.shape[1]):
                if plane[x0:x0 + size, y0:y0 + size].any() or rng.random() < keep_background:
                    kept.append((z, x0, y0))
    return np.array(kept, np.int32).reshape(-1, 3)


def _write_case(path: Path, case: CachedCase) -> None:
    import h5py

    from tumorscope.io.writers import write_atomic

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("image", data=case.image.astype(np.float16), compression="lzf")
            f.create_dataset("labels", data=case.labels, compression="lzf")
            f.create_dataset("patches", data=case.patches)
            f.attrs["case_id"] = case.case_id

    write_atomic(path, write)


def read_cached(path: Path) -> CachedCase:
    """One case file of the cache."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return CachedCase(str(f.attrs["case_id"]), np.asarray(f["image"], np.float32),
                              np.asarray(f["labels"]), np.asarray(f["patches"]))
    except (OSError, KeyError) as err:
        raise ScanReadError(path, f"unreadable cache file ({err}); delete it and run "
                            "`tumorscope prepare` again") from None


def build_cache(cfg: BratsExperiment, records: list[Record], progress: bool = True) -> Path:
    """Preprocess every case of ``records`` into ``cfg.cache_dir`` (resumable)."""
    from tumorscope.io.writers import write_json
    from tumorscope.progress import track

    folder = cfg.cache_dir
    settings = cache_settings(cfg)
    settings_path = folder / SETTINGS
    if settings_path.is_file():
        if json.loads(settings_path.read_text(encoding="utf-8")) != settings:
            raise ConfigError(folder, "this cache was built with other settings; delete the "
                              "folder or set prep.cache_dir to a new one")
    else:
        write_json(settings_path, settings)
    pre = preprocessing(cfg)
    channels = [MODALITIES.index(m) for m in cfg.model.modalities]
    todo = [r for r in records if not (folder / f"{r.id}.h5").is_file()]
    if not todo:  # complete: say so rather than draw an empty progress bar
        if progress:
            print(f"cache {folder} is complete ({len(records)} cases)", flush=True)
        return folder
    for record in track(todo, f"prepare {folder}", len(todo)) if progress else todo:
        case = read_case(record.image, missing=cfg.prep.missing_modality,
                         label_map=cfg.prep.label_map)
        image, geometry = pre(case.image, case.spacing)
        labels = pre.labels(case.labels, geometry) if case.labels is not None else \
            np.zeros(geometry.grid, np.uint8)
        patches = patch_index(labels, cfg.model.patch_size[0], cfg.prep.patch_stride,
                              cfg.prep.keep_background, cfg.seed) \
            if cfg.model.family == "2d" else np.zeros((0, 3), np.int32)
        _write_case(folder / f"{record.id}.h5", CachedCase(record.id, image[channels], labels,
                                                          patches))
    return folder
