"""Writers for small test fixtures in each dataset's real on-disk format."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


@contextmanager
def module_scratch(factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A module-scoped fixture's folder, removed when the module is done: a tiny run's
    checkpoints take about 0.7 GB, and a CI machine's disk is not ours to fill. (Folders of
    single tests go when they pass: ``tmp_path_retention_policy`` in pyproject.toml.)"""
    path = factory.mktemp(name)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_figshare_mat(path: Path, image: np.ndarray, label: int, pid: str,
                       mask: np.ndarray | None = None) -> Path:
    """A MATLAB v7.3 (HDF5 + 512-byte MATLAB userblock) file in the figshare ``cjdata`` layout,
    arrays stored transposed as MATLAB (column-major) does."""
    import h5py

    mask = mask if mask is not None else np.zeros(image.shape, dtype=bool)
    rows, cols = np.nonzero(mask)
    border = np.stack([rows[:4], cols[:4]], 1).astype(float).ravel()[None] + 1
    with h5py.File(path, "w", userblock_size=512) as f:
        cj = f.create_group("cjdata")
        cj.attrs["MATLAB_class"] = np.bytes_("struct")
        cj.create_dataset("image", data=image.astype(np.int16).T)
        cj.create_dataset("label", data=np.array([[float(label)]]))
        cj.create_dataset("PID", data=np.array([[ord(c)] for c in pid], dtype=np.uint16))
        cj.create_dataset("tumorBorder", data=border.T)
        cj.create_dataset("tumorMask", data=mask.astype(np.uint8).T)
        cj["PID"].attrs["MATLAB_class"] = np.bytes_("char")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 " \
             b"HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")
    return path


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2",
                slope: float = 1.0, intercept: float = 0.0,
                spacing: tuple[float, float] = (0.5, 0.5)) -> Path:
    """A single-frame MR DICOM file with stored values ``pixels`` (uint16)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "MR", "TEST-001"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation, ds.SamplesPerPixel = 0, 1
    ds.PhotometricInterpretation = photometric
    ds.PixelSpacing = [spacing[0], spacing[1]]
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_nifti(path: Path, data: np.ndarray, zooms: tuple[float, ...] = (1.0, 1.0, 1.0)) -> Path:
    """A NIfTI-1 file with a scaled diagonal affine."""
    import nibabel as nib

    affine = np.diag([*zooms[:3], *([1.0] * (3 - len(zooms[:3]))), 1.0])
    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms(tuple(zooms[: data.ndim]) + (1.0,) * max(0, data.ndim - len(zooms)))
    nib.save(img, str(path))
    return path


def blob_slice(size: int, label: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic int16 'T1-CE slice' with a bright disc whose position encodes the class."""
    yy, xx = np.mgrid[:size, :size]
    head = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (0.45 * size) ** 2
    image = head * 400.0 + rng.normal(0, 20, (size, size))
    cx = [0.3, 0.5, 0.7][label] * size + rng.uniform(-2, 2)
    cy = 0.5 * size + rng.uniform(-4, 4)
    radius = size * rng.uniform(0.08, 0.14)
    mask = ((yy - cy) ** 2 + (xx - cx) ** 2) < radius ** 2
    image = image + mask * 600.0
    return np.clip(image, 0, 3000).astype(np.int16), mask


def make_figshare_mat_dataset(root: Path, patients: int = 9, slices: int = 4, size: int = 64,
                              seed: int = 0) -> Path:
    """A folder of figshare-format ``.mat`` slices: ``patients`` patients, one class each."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    n = 1
    for p in range(patients):
        label = p % 3
        for _ in range(slices):
            image, mask = blob_slice(size, label, rng)
            write_figshare_mat(root / f"{n}.mat", image, label + 1, f"P{p:03d}", mask)
            n += 1
    return root


def save_random_model(directory: Path, input_size: int = 64,
                      outlines: list[str] | None = None) -> Path:
    """An untrained (random) joint model checkpoint: enough to exercise serving code paths
    (``outlines``: one mask per outline definition)."""
    import torch

    from tumorscope.checkpoint.store import save_checkpoint
    from tumorscope.models import build_joint

    torch.manual_seed(0)
    model_cfg = {"arch": "unet", "encoder": "resnet18", "encoder_weights": None,
                 "attention": "none", "in_channels": 1, "dropout": 0.0, "outlines": outlines}
    card = {"name": "random-test-model", "task": "joint",
            "classes": ["meningioma", "glioma", "pituitary"], "model": model_cfg,
            "preprocessing": {"input_size": input_size, "in_channels": 1,
                              "normalization": "instance"},
            "data": {"split": {"test_fold": 0, "val_fold": 1}}}
    net = build_joint("unet", "resnet18", 3, mask_channels=len(outlines or [None]))
    save_checkpoint(directory, net.state_dict(), card)
    return directory


def save_random_classifier(directory: Path, classes: tuple[str, ...] = ("no tumour", "tumour"),
                           input_size: int = 64) -> Path:
    """An untrained classify-task model (timm resnet18, no mask head) with a card."""
    import torch

    from tumorscope.checkpoint.store import save_checkpoint
    from tumorscope.models.classifier import classifier_from_config

    torch.manual_seed(0)
    model_cfg = {"arch": "timm", "name": "resnet18", "encoder_weights": None, "in_channels": 1,
                 "input_size": input_size, "dropout": 0.0}
    card = {"name": "random-classifier", "task": "classify", "classes": list(classes),
            "model": model_cfg,
            "preprocessing": {"input_size": input_size, "in_channels": 1,
                              "normalization": "instance"},
            "data": {"split": {"test_fold": 0, "val_fold": 1}}}
    net = classifier_from_config(model_cfg, len(classes), load_pretrained=False)
    save_checkpoint(directory, net.state_dict(), card)
    return directory


def save_carded_model(tmp: Path, data: Path, *overrides: str) -> Path:
    """An untrained joint model whose card holds the tiny config of ``write_config`` on
    ``data`` (plus ``overrides``) and its patient split: ``tmp/model``."""
    import torch

    from tumorscope.checkpoint.card import build_card
    from tumorscope.checkpoint.store import save_checkpoint
    from tumorscope.config import load_config
    from tumorscope.data.prepare import prepare_split
    from tumorscope.models.joint import joint_from_config
    from tumorscope.transforms.slice2d import card_preprocessing

    tmp.mkdir(parents=True, exist_ok=True)
    cfg = load_config(write_config(tmp, data), list(overrides))
    index, split = prepare_split(cfg)
    card = build_card(cfg, index, split, card_preprocessing(cfg, (0.2, 0.3)))
    torch.manual_seed(0)
    net = joint_from_config(card.model, len(card.classes), load_pretrained=False)
    save_checkpoint(tmp / "model", net.state_dict(), card)
    return tmp / "model"


def save_random_brats_model(directory: Path, patch: int = 16) -> Path:
    """An untrained 3D BraTS model (SegResNet, 8 filters) with a card, for serving tests."""
    import torch

    from tumorscope.checkpoint.store import save_checkpoint
    from tumorscope.models.brats import brats_from_config

    torch.manual_seed(0)
    model_cfg = {"family": "3d", "arch": "segresnet", "filters": 8,
                 "modalities": ["t1", "t1ce", "t2", "flair"], "patch_size": [patch] * 3}
    card = {"name": "random-brats-model", "task": "brats", "classes": ["tumour"],
            "model": model_cfg,
            "preprocessing": {"modalities": model_cfg["modalities"], "spacing": None,
                              "clip_percentiles": [0.5, 99.5], "margin": 2,
                              "missing_modality": "error"},
            "data": {"dataset": "brats", "split": {"test_fold": 0, "val_fold": 1}}}
    save_checkpoint(directory, brats_from_config(model_cfg).state_dict(), card)
    return directory


def make_lgg_dataset(root: Path, patients: int = 6, slices: int = 12, size: int = 64,
                     jpeg: bool = True, seed: int = 0) -> Path:
    """``kaggle_3m/<case>/<case>_<n>.tif`` (3-channel, JPEG-compressed like the shared copy, or
    plain) with ``<case>_<n>_mask.tif`` (deflate). The last patient has no tumour at all."""
    import tifffile

    rng = np.random.default_rng(seed)
    cases = root / "kaggle_3m"
    cases.mkdir(parents=True, exist_ok=True)
    rows = ["Patient;RNASeqCluster;death01"]
    for p in range(patients):
        case = f"TCGA_XX_{1000 + p}_20000101"
        (cases / case).mkdir(exist_ok=True)
        rows.append(f"TCGA_XX_{1000 + p};{p % 3};{p % 2}")
        for n in range(1, slices + 1):
            image, mask = blob_slice(size, p % 3, rng)
            if p == patients - 1 or not 3 <= n <= slices - 3:
                mask[:] = False
            rgb = np.stack([np.clip(image / 12 + rng.normal(0, 3, image.shape), 0, 255)] * 3, -1)
            rgb[..., 1] += mask * 60
            tifffile.imwrite(cases / case / f"{case}_{n}.tif",
                             np.clip(rgb, 0, 255).astype(np.uint8), photometric="rgb",
                             compression="jpeg" if jpeg else None)
            tifffile.imwrite(cases / case / f"{case}_{n}_mask.tif",
                             mask.astype(np.uint8) * 255, compression="zlib")
    (cases / "data.csv").write_text("\n".join(rows) + "\n")
    return root


def cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run the installed ``tumorscope`` command in a subprocess."""
    exe = Path(sys.executable).with_name("tumorscope")
    return subprocess.run([str(exe), *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def write_config(tmp: Path, data: Path, **trainer: object) -> Path:
    """A tiny joint experiment on a figshare-format ``.mat`` folder (``trainer`` overrides)."""
    t = {"epochs": 3, "batch_size": 4, "accelerator": "cpu", "checkpoint_every_n_steps": 1,
         "log_every_n_steps": 1, **trainer}
    lines = "\n".join(f"  {k}: {v}" for k, v in t.items())
    text = f"""name: tiny
seed: 3
data: {{dataset: figshare-mat, root: {data}, folds: 3, test_fold: 0, val_fold: 1,
        fold_source: computed, cache: true}}
model: {{arch: unet, encoder: resnet18, encoder_weights: none, attention: scse, input_size: 64,
         normalization: global}}
ema: {{enabled: true, decay: 0.9}}
output: {{root: {tmp / 'runs'}}}
trainer:
{lines}
"""
    (tmp / "tiny.yaml").write_text(text)
    return tmp / "tiny.yaml"


BRATS_SUFFIXES = {"brats2021": ("_", {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair",
                                      "seg": "seg"}),
                  "brats2023": ("-", {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f",
                                      "seg": "seg"})}


def brats_labels(shape: tuple[int, int, int] = (24, 20, 16)) -> np.ndarray:
    """Internal labels (1 NCR, 2 ED, 3 ET): an oedema ball around a core with an enhancing rim."""
    grid = np.indices(shape).astype(float)
    centre = np.array(shape, float)[:, None, None, None] / 2
    r = np.sqrt(((grid - centre) ** 2).sum(axis=0))
    labels = np.zeros(shape, np.uint8)
    labels[r < 7] = 2
    labels[r < 4.5] = 3
    labels[r < 3] = 1
    return labels


def write_brats_case(folder: Path, case_id: str = "Case_001", naming: str = "brats2021",
                     labels: np.ndarray | None = None, spacing: tuple[float, ...] = (1, 1, 1),
                     affine: np.ndarray | None = None, skip: tuple[str, ...] = ()) -> Path:
    """A case folder in the given naming: modality k holds brain + tumour intensities + k
    (so channels are told apart), and a segmentation in the naming's label values."""
    import nibabel as nib

    labels = brats_labels() if labels is None else labels
    separator, suffixes = BRATS_SUFFIXES[naming]
    affine = np.diag([*spacing, 1.0]) if affine is None else affine
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    brain = np.zeros(labels.shape, bool)
    brain[2:-2, 2:-2, 1:-1] = True
    for k, modality in enumerate(("t1", "t1ce", "t2", "flair")):
        if modality in skip:
            continue
        image = (brain * (100 + 10 * k) + labels * 50 + rng.normal(0, 5, labels.shape)) * brain
        nib.save(nib.Nifti1Image(image.astype(np.int16), affine),
                 str(folder / f"{case_id}{separator}{suffixes[modality]}.nii.gz"))
    values = labels.copy()
    if naming == "brats2021":
        values[labels == 3] = 4
    if "seg" not in skip:
        nib.save(nib.Nifti1Image(values.astype(np.uint8), affine),
                 str(folder / f"{case_id}{separator}seg.nii.gz"))
    return folder


# a tiny classify experiment on a figshare-format .mat folder ({data}; runs under {runs})
TINY_CLASSIFY = """name: tinycls
task: classify
seed: 3
data: {{dataset: figshare-mat, root: {data}, folds: 3, fold_source: computed}}
model: {{arch: timm, name: resnet18, encoder_weights: none, input_size: 64}}
output: {{root: {runs}}}
trainer: {{epochs: 1, batch_size: 4, accelerator: cpu, limit_train_batches: 2,
          checkpoint_every_n_steps: 1, log_every_n_steps: 1}}
"""
