"""The NIfTI files of one BraTS case from an uploaded archive (zip, tar, tar.gz), in memory.

Member names only pick the modality (by their BraTS suffix); nothing is written to disk, so
paths inside the archive never matter. Declared sizes are checked before any member is read:
an archive that inflates beyond the limit is refused as a bomb.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import PurePosixPath

from tumorscope.errors import ImageTooLargeError, ScanReadError
from tumorscope.io.brats import modality_of


def _pick(name: str) -> str | None:
    base = PurePosixPath(name.replace("\\", "/")).name
    found = modality_of(base)
    return None if found is None or base.startswith(".") else found[1]


def case_files_from_archive(name: str, data: bytes, max_bytes: int
                            ) -> dict[str, tuple[str, bytes]]:
    """``{modality or 'seg': (member file name, bytes)}`` of the case inside the archive."""
    chosen: dict[str, tuple[str, int]] = {}
    try:
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                members = [(i.filename, i.file_size) for i in zf.infolist() if not i.is_dir()]
                chosen = _choose(name, members, max_bytes)
                return {k: (PurePosixPath(m).name, zf.read(m)) for k, (m, _) in chosen.items()}
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
            infos = {i.name: i for i in tf.getmembers() if i.isfile()}
            chosen = _choose(name, [(n, i.size) for n, i in infos.items()], max_bytes)
            out = {}
            for key, (member, _) in chosen.items():
                handle = tf.extractfile(infos[member])
                if handle is None:
                    raise ScanReadError(name, f"archive member {member} cannot be read")
                out[key] = (PurePosixPath(member).name, handle.read())
            return out
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        raise ScanReadError(name, f"not a readable zip or tar archive ({err})") from None


def _choose(name: str, members: list[tuple[str, int]], max_bytes: int
            ) -> dict[str, tuple[str, int]]:
    chosen: dict[str, tuple[str, int]] = {}
    for member, size in members:
        key = _pick(member)
        if key is None:
            continue
        if key in chosen:
            raise ScanReadError(name, f"the archive holds two {key} files ({chosen[key][0]}, "
                                f"{member}); upload one case at a time")
        chosen[key] = (member, size)
    if not chosen:
        raise ScanReadError(name, "no BraTS NIfTI files in the archive (expected "
                            "<case>_t1.nii.gz ... or <case>-t1n.nii.gz ...)")
    total = sum(size for _, size in chosen.values())
    if total > max_bytes:
        raise ImageTooLargeError(name, f"archive members total {total:,} bytes, above the "
                                 f"limit of {max_bytes:,}; refused")
    return chosen
