"""BraTS cases over the API and in the page: four files or an archive in, region volumes,
a NIfTI in the input's space, and a viewer with orthogonal views and region toggles."""

from __future__ import annotations

import base64
import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pytest

from conftest_server import Server
from fixtures import write_brats_case

MODS = {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair"}


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    affine = np.diag([-1.0, 1.0, 1.5, 1.0])
    affine[:3, 3] = [20, -10, 5]
    return write_brats_case(tmp_path_factory.mktemp("case") / "P7", "P7", affine=affine)


def _files(case: Path) -> dict[str, tuple[str, bytes]]:
    return {m: (f"P7_{s}.nii.gz", (case / f"P7_{s}.nii.gz").read_bytes())
            for m, s in MODS.items()}


def test_four_files_give_volumes_and_a_nifti_in_the_input_space(server: Server,
                                                                case: Path) -> None:
    resp = httpx.post(f"{server.url}/api/v1/predict-case", files=_files(case), timeout=120)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["case_id"] == "P7" and set(body["volumes_cm3"]) == {"WT", "TC", "ET"}
    seg = nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(
        body["segmentation_nifti_base64"])))
    source = nib.load(str(case / "P7_t1.nii.gz"))
    assert seg.shape == source.shape and np.allclose(seg.affine, source.affine)
    assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1, 2, 4}  # 2013-2021 convention
    display = body["display"]
    n = int(np.prod(display["shape"]))
    assert len(base64.b64decode(display["image_base64"])) == n
    assert len(base64.b64decode(display["labels_base64"])) == n
    models = httpx.get(f"{server.url}/api/v1/models").json()
    assert [m["card"]["task"] for m in models] == ["joint", "brats"]


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_an_archive_of_the_case_folder(server: Server, case: Path, kind: str) -> None:
    buf = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buf, "w") as zf:
            for p in case.iterdir():
                zf.write(p, f"P7/{p.name}")
    else:
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            for p in case.iterdir():
                tf.add(p, f"../../P7/{p.name}")  # member paths are never used as paths
    resp = httpx.post(f"{server.url}/api/v1/predict-case",
                      files={"archive": (f"P7.{kind}", buf.getvalue())}, timeout=120)
    assert resp.status_code == 200, resp.text
    assert resp.json()["case_id"] == "P7"


def test_bad_cases_are_4xx_with_one_line(server: Server, case: Path) -> None:
    files = _files(case)
    del files["t2"]
    resp = httpx.post(f"{server.url}/api/v1/predict-case", files=files, timeout=60)
    assert resp.status_code == 422 and "missing modality t2" in resp.json()["detail"]
    other = _files(case)
    other["flair"] = ("P7_flair.nii.gz", gzip.compress(nib.Nifti1Image(
        np.zeros((5, 5, 5), np.int16), np.eye(4)).to_bytes()))
    resp = httpx.post(f"{server.url}/api/v1/predict-case", files=other, timeout=60)
    assert resp.status_code == 422 and "differs" in resp.json()["detail"]
    resp = httpx.post(f"{server.url}/api/v1/predict-case",
                      files={"archive": ("x.zip", b"PK\x03\x04broken")}, timeout=60)
    assert resp.status_code == 422 and "archive" in resp.json()["detail"]
    resp = httpx.post(f"{server.url}/api/v1/predict-case", files={"other": ("a", b"1")},
                      timeout=60)
    assert resp.status_code == 422 and "t1, t1ce, t2 and flair" in resp.json()["detail"]
    assert "\n" not in resp.json()["detail"]


def test_one_modality_to_the_slice_model_is_refused(server: Server, case: Path) -> None:
    resp = httpx.post(f"{server.url}/api/v1/predict", files={"file": (
        "P7_flair.nii.gz", (case / "P7_flair.nii.gz").read_bytes())}, timeout=60)
    assert resp.status_code == 422 and "volume of a BraTS case" in resp.json()["detail"]
