"""BraTS cases: four co-registered NIfTI modalities (and a segmentation) of one patient.

Two namings are read: 2013-2021 (``<case>_{t1,t1ce,t2,flair,seg}.nii[.gz]``, enhancing
tumour = 4) and 2023 (``<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz``, enhancing tumour = 3), from a
case folder or from files named explicitly. Modalities are stacked in :data:`MODALITIES`
order; affine and header are kept so outputs land in the input's space. Labels are mapped to
one internal convention, :data:`INTERNAL_LABELS` (0 background, 1 necrotic / non-enhancing
core, 2 oedema, 3 enhancing), and back with the naming's own map.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tumorscope.errors import ScanReadError
from tumorscope.io.scan import DEFAULT_MAX_ELEMENTS, check_elements

MODALITIES = ("t1", "t1ce", "t2", "flair")
"""Stacking order of the channels (recorded in every BraTS model card)."""

INTERNAL_LABELS = {0: "background", 1: "NCR", 2: "ED", 3: "ET"}
REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
"""Evaluation regions as sets of internal labels: whole tumour, tumour core, enhancing."""


@dataclass(frozen=True)
class Naming:
    """A BraTS file-naming convention and its label values."""

    name: str
    separator: str
    suffixes: dict[str, str]  # modality (or "seg") -> file-name suffix
    labels: dict[int, int]  # file label -> internal label

    def file_name(self, case_id: str, key: str, extension: str = ".nii.gz") -> str:
        return f"{case_id}{self.separator}{self.suffixes[key]}{extension}"

    def to_file_labels(self, internal: np.ndarray) -> np.ndarray:
        """Internal labels -> this naming's label values."""
        lut = np.zeros(max(INTERNAL_LABELS) + 1, np.uint8)
        for value, label in self.labels.items():
            lut[label] = value
        return lut[internal]


NAMINGS = {
    "brats2021": Naming("brats2021", "_", {"t1": "t1", "t1ce": "t1ce", "t2": "t2",
                                           "flair": "flair", "seg": "seg"},
                        {0: 0, 1: 1, 2: 2, 4: 3}),
    "brats2023": Naming("brats2023", "-", {"t1": "t1n", "t1ce": "t1c", "t2": "t2w",
                                           "flair": "t2f", "seg": "seg"},
                        {0: 0, 1: 1, 2: 2, 3: 3}),
}
"""``brats2021`` covers the 2013-2021 releases (and BraTS 2018's ``Brats18_*`` cases)."""

EXTENSIONS = (".nii.gz", ".nii")


@dataclass
class BratsCase:
    """One patient: ``image`` is ``(C, X, Y, Z)`` float32 in ``modalities`` order."""

    case_id: str
    image: np.ndarray
    modalities: tuple[str, ...]
    affine: np.ndarray
    header: Any  # nibabel header of the first modality, reused for outputs
    naming: Naming
    labels: np.ndarray | None = None  # (X, Y, Z) uint8 internal labels
    files: dict[str, Path] = field(default_factory=dict)
    filled: tuple[str, ...] = ()  # modalities missing from disk, filled as configured

    @property
    def spacing(self) -> tuple[float, float, float]:
        zooms = self.header.get_zooms()[:3]
        return (float(zooms[0]), float(zooms[1]), float(zooms[2]))

    @property
    def shape(self) -> tuple[int, int, int]:
        x, y, z = self.image.shape[1:]
        return (int(x), int(y), int(z))


def _strip_extension(name: str) -> str | None:
    for ext in EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return None


def find_case_files(folder: Path) -> tuple[str, Naming, dict[str, Path]]:
    """``(case id, naming, {modality or 'seg': path})`` found in a case folder."""
    if not folder.is_dir():
        raise ScanReadError(folder, "not a folder; a BraTS case is a folder of NIfTI files "
                            "(or pass the four modality files explicitly)")
    stems = {s: p for p in sorted(folder.iterdir()) if (s := _strip_extension(p.name))}
    for naming in NAMINGS.values():
        found: dict[str, Path] = {}
        case_ids: set[str] = set()
        for stem, path in stems.items():
            for key, suffix in naming.suffixes.items():
                tail = naming.separator + suffix
                if stem.endswith(tail) and len(stem) > len(tail):
                    found[key] = path
                    case_ids.add(stem[: -len(tail)])
        if any(m in found for m in MODALITIES):
            if len(case_ids) > 1:
                raise ScanReadError(folder, f"files of several cases in one folder: "
                                    f"{', '.join(sorted(case_ids))}")
            return case_ids.pop(), naming, found
    raise ScanReadError(folder, "no BraTS files found: expected <case>_t1.nii.gz ... "
                        "(2013-2021) or <case>-t1n.nii.gz ... (2023)")


def modality_of(file_name: str) -> tuple[Naming, str] | None:
    """``(naming, modality or 'seg')`` a BraTS file name declares, or None."""
    stem = _strip_extension(file_name)
    if stem is None:
        return None
    for naming in NAMINGS.values():
        for key, suffix in naming.suffixes.items():
            tail = naming.separator + suffix
            if stem.endswith(tail) and len(stem) > len(tail):
                return naming, key
    return None


def naming_of(paths: dict[str, Path]) -> Naming:
    """The naming whose modality suffixes match explicitly given files (2021 by default)."""
    for naming in NAMINGS.values():
        if all((_strip_extension(p.name) or "").endswith(naming.separator + naming.suffixes[m])
               for m, p in paths.items() if m in naming.suffixes):
            return naming
    return NAMINGS["brats2021"]


def _load(path: Path, max_elements: int) -> Any:
    import nibabel as nib

    try:
        img: Any = nib.load(str(path))
        check_elements(path, img.shape, max_elements)
        return img
    except ScanReadError:
        raise
    except Exception as err:  # nibabel raises ImageFileError, EOFError, zlib errors...
        raise ScanReadError(path, f"not a readable NIfTI file ({err})") from None


def _voxels(path: Path, img: Any, case_id: str) -> np.ndarray:
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ScanReadError(path, f"case {case_id}: expected a 3D volume, got shape "
                            f"{data.shape}")
    return data


def read_case(source: Path | dict[str, Path], seg: Path | None = None,
              case_id: str | None = None, missing: str = "error",
              label_map: dict[int, int] | None = None,
              max_elements: int = DEFAULT_MAX_ELEMENTS) -> BratsCase:
    """Read a case folder, or ``{modality: path}`` (plus ``seg``), into a :class:`BratsCase`.

    ``missing`` is what to do when a modality is absent: ``"error"`` (default) or ``"zeros"``
    (a documented fallback: the channel is filled with zeros and listed in ``filled``).
    ``label_map`` (file label -> internal label) overrides the naming's convention.
    """
    if isinstance(source, dict):
        files = {k: Path(v) for k, v in source.items()}
        if seg is not None:
            files["seg"] = Path(seg)
        naming = naming_of(files)
        first = next(iter(files.values()))
        stem = _strip_extension(first.name) or first.name
        case_id = case_id or stem.rsplit(naming.separator, 1)[0]
        where: Path = first.parent
    else:
        found_id, naming, files = find_case_files(Path(source))
        case_id, where = case_id or found_id, Path(source)
    unknown = set(files) - {*MODALITIES, "seg"}
    if unknown:
        raise ScanReadError(where, f"case {case_id}: unknown modality name(s) "
                            f"{', '.join(sorted(unknown))}; expected {', '.join(MODALITIES)}")
    def loader(path: Path) -> Loader:
        return lambda: _load(path, max_elements)

    return assemble_case(case_id, naming, {k: (p, loader(p)) for k, p in files.items()},
                         where, missing, label_map)


Loader = Callable[[], Any]


def assemble_case(case_id: str, naming: Naming, images: dict[str, tuple[Path, Loader]],
                  where: Path, missing: str = "error",
                  label_map: dict[int, int] | None = None) -> BratsCase:
    """Check and stack a case's images (``{modality or 'seg': (name, loader)}``, each loader
    returning a nibabel image): geometry, missing modalities, label convention."""
    files = {k: name for k, (name, _) in images.items()}
    absent = [m for m in MODALITIES if m not in files]
    if absent and (missing != "zeros" or len(absent) == len(MODALITIES)):
        expected = ", ".join(naming.file_name(case_id, m) for m in absent)
        raise ScanReadError(where, f"case {case_id}: missing modality {', '.join(absent)} "
                            f"(expected {expected})")
    reference_key = next(m for m in MODALITIES if m in files)
    reference = images[reference_key][1]()
    shape, affine = reference.shape[:3], np.asarray(reference.affine)
    channels: list[np.ndarray | None] = []
    for modality in MODALITIES:
        if modality not in files:
            channels.append(None)
            continue
        img = reference if modality == reference_key else images[modality][1]()
        _check_geometry(files[modality], img, shape, affine, files[reference_key], case_id)
        channels.append(_voxels(files[modality], img, case_id).astype(np.float32, copy=False))
    image = np.stack([c if c is not None else np.zeros(shape, np.float32) for c in channels])
    labels = None
    if "seg" in files:
        seg_img = images["seg"][1]()
        _check_geometry(files["seg"], seg_img, shape, affine, files[reference_key], case_id)
        labels = map_labels(_voxels(files["seg"], seg_img, case_id), label_map or naming.labels,
                            files["seg"], naming)
    return BratsCase(case_id, image, MODALITIES, affine, reference.header, naming, labels,
                     files, tuple(absent))


def read_case_bytes(uploads: dict[str, tuple[str, bytes]], missing: str = "error",
                    label_map: dict[int, int] | None = None,
                    max_elements: int = DEFAULT_MAX_ELEMENTS) -> BratsCase:
    """A case from in-memory files ``{modality: (file name, bytes)}`` (an upload): never
    touches the disk; file names only name the case and the files in errors."""
    from tumorscope.io.nifti import nifti_from_bytes

    names = {k: Path(Path(n.replace("\\", "/")).name or k) for k, (n, _) in uploads.items()}
    naming = naming_of(names)
    first = next(iter(names.values()))
    stem = _strip_extension(first.name) or first.name
    case_id = stem.rsplit(naming.separator, 1)[0] if naming.separator in stem else "case"

    def loader(key: str) -> Loader:
        def load() -> Any:
            try:
                return nifti_from_bytes(uploads[key][1], str(names[key]), max_elements)
            except ScanReadError:
                raise
            except Exception as err:  # nibabel raises ImageFileError, EOFError, zlib errors
                raise ScanReadError(names[key], f"not a readable NIfTI file ({err})") from None
        return load

    return assemble_case(case_id, naming, {k: (names[k], loader(k)) for k in uploads},
                         Path(case_id), missing, label_map)


def _check_geometry(path: Path, img: Any, shape: tuple[int, ...], affine: np.ndarray,
                    reference: Path, case_id: str) -> None:
    if tuple(img.shape[:3]) != tuple(shape):
        raise ScanReadError(path, f"case {case_id}: shape {tuple(img.shape[:3])} differs from "
                            f"{reference.name} {tuple(shape)}")
    if not np.allclose(np.asarray(img.affine), affine, atol=1e-3):
        raise ScanReadError(path, f"case {case_id}: its affine (orientation, spacing or "
                            f"origin) differs from {reference.name}; co-register the modalities")


def map_labels(values: np.ndarray, label_map: dict[int, int], path: Path | str,
               naming: Naming) -> np.ndarray:
    """File label values -> internal labels; values outside the map stop with one line."""
    if not np.issubdtype(values.dtype, np.integer):
        rounded = np.rint(values)
        if not np.array_equal(rounded, values):
            raise ScanReadError(path, "segmentation has non-integer labels")
        values = rounded.astype(np.int64)
    present = np.unique(values)
    unexpected = sorted(int(v) for v in present if int(v) not in label_map)
    if unexpected:
        allowed = ", ".join(str(k) for k in sorted(label_map))
        raise ScanReadError(path, f"labels {unexpected} outside the {naming.name} convention "
                            f"({allowed}); set the label map if this dataset differs")
    lut = np.zeros(int(present.max()) + 1, np.uint8)
    for value, internal in label_map.items():
        if 0 <= value < lut.size:
            lut[value] = internal
    return lut[values.astype(np.int64)]


def regions(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Internal label map -> ``{"WT", "TC", "ET"}`` boolean masks."""
    return {name: np.isin(labels, members) for name, members in REGIONS.items()}


def labels_from_regions(wt: np.ndarray, tc: np.ndarray, et: np.ndarray) -> np.ndarray:
    """Nested region masks -> internal labels (ET inside TC inside WT, as BraTS defines)."""
    labels = np.zeros(wt.shape, np.uint8)
    labels[wt] = 2
    labels[tc & wt] = 1
    labels[et & tc & wt] = 3
    return labels


def segmentation_image(labels: np.ndarray, case: BratsCase) -> Any:
    """Internal labels -> a NIfTI image in the case's space (its affine and header) and its
    label convention (4 for enhancing in 2013-2021, 3 in 2023)."""
    import nibabel as nib

    if labels.shape != case.shape:
        raise ValueError(f"segmentation shape {labels.shape} is not the case's {case.shape}")
    header = case.header.copy()
    header.set_data_dtype(np.uint8)
    img = nib.Nifti1Image(case.naming.to_file_labels(labels), case.affine, header)
    img.header.set_slope_inter(1, 0)
    return img


def write_segmentation(labels: np.ndarray, case: BratsCase, path: Path) -> Path:
    """:func:`segmentation_image` written atomically to ``path``."""
    import nibabel as nib

    from tumorscope.io.writers import write_atomic

    img = segmentation_image(labels, case)
    return write_atomic(path, lambda p: nib.save(img, str(p)))
