"""The JSON API over real HTTP against a live ``tumorscope serve`` process."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest_server import Server
from fixtures import write_dicom, write_figshare_mat, write_nifti
from tumorscope.serve.encoding import rle_decode, rle_encode


def _png(size: tuple[int, int] = (80, 96)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, size, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _post(server: Server, name: str, data: bytes, **form: str) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/predict", files={"file": (name, data)}, data=form,
                      timeout=60)


def test_health_ready_models_docs(server: Server) -> None:
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/ready").json() == {"ready": True}
    models = httpx.get(f"{server.url}/api/v1/models").json()
    assert models[0]["model_id"].startswith("random-test-model-")
    assert models[0]["card"]["classes"] == ["meningioma", "glioma", "pituitary"]
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/api/v1/predict" in spec["paths"]
    assert httpx.get(f"{server.url}/docs").status_code == 200


def _formats(tmp: Path) -> dict[str, bytes]:
    import tifffile

    rng = np.random.default_rng(1)
    img = rng.integers(0, 3000, (40, 48)).astype(np.int16)
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, "JPEG")
    tif = io.BytesIO()
    tifffile.imwrite(tif, rng.integers(0, 255, (40, 48, 3), np.uint8), photometric="rgb",
                     compression="jpeg")
    return {
        "scan.png": _png((40, 48)), "scan.jpg": buf.getvalue(), "scan.tif": tif.getvalue(),
        "scan.dcm": write_dicom(tmp / "a.dcm", img.astype(np.uint16), spacing=(0.5, 0.5))
        .read_bytes(),
        "scan.mat": write_figshare_mat(tmp / "a.mat", img, 1, "P1").read_bytes(),
        "slice.nii": write_nifti(tmp / "s.nii", img[..., None].astype(np.float32)).read_bytes(),
    }


def test_each_accepted_format(server: Server, tmp_path: Path) -> None:
    for name, data in _formats(tmp_path).items():
        resp = _post(server, name, data)
        assert resp.status_code == 200, (name, resp.text)
        body = resp.json()
        assert body["filename"] == name and body["shape"] == [40, 48]
        assert sum(body["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert body["predicted_class"] == max(body["probabilities"], key=body["probabilities"].get)
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["mask_png_base64"])))) > 0
        np.testing.assert_array_equal(rle_decode(body["mask_rle"]), mask)
        assert body["tumour_area_pixels"] == int(mask.sum())
        assert body["model_version"].startswith("tumorscope")
        assert "not a medical device" in body["disclaimer"]
        if name == "scan.dcm":
            assert body["tumour_area_mm2"] == pytest.approx(0.25 * body["tumour_area_pixels"])


def test_volume_with_slice_index(server: Server, tmp_path: Path) -> None:
    vol = np.random.default_rng(2).normal(100, 10, (32, 36, 9)).astype(np.float32)
    data = write_nifti(tmp_path / "v.nii.gz", vol, zooms=(0.8, 0.8, 2.0)).read_bytes()
    body = _post(server, "v.nii.gz", data, slice="3").json()
    assert body["slice_index"] == 3 and body["shape"] == [32, 36]
    assert body["spacing_mm"] == pytest.approx([0.8, 0.8])
    assert _post(server, "v.nii.gz", data).json()["slice_index"] == 4  # middle by default
    bad = _post(server, "v.nii.gz", data, slice="9")
    assert bad.status_code == 422 and "outside 0..8" in bad.json()["detail"]


@pytest.mark.parametrize("name,data,status,fragment", [
    ("notes.txt", b"hello", 415, "unsupported file type"),
    ("broken.png", b"\x89PNG\r\n\x1a\n" + b"x" * 100, 422, "not a readable image"),
    ("empty.dcm", b"", 422, "empty"),
    ("fake.dcm", b"not dicom at all" * 20, 422, "DICOM"),
])
def test_rejected_files(server: Server, name: str, data: bytes, status: int,
                        fragment: str) -> None:
    resp = _post(server, name, data)
    assert resp.status_code == status and fragment in resp.json()["detail"]
    assert name in resp.json()["detail"]


def test_too_large_upload_is_413(server: Server) -> None:
    resp = _post(server, "big.png", b"\0" * (3 * 1024 * 1024))
    assert resp.status_code == 413 and "exceeds the limit" in resp.json()["detail"]


def test_decompression_bombs_are_refused(server: Server, tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("L", (4000, 4000)).save(buf, "PNG")  # 16 Mpx in ~16 kB, above --max-pixels
    assert len(buf.getvalue()) < 100_000
    resp = _post(server, "bomb.png", buf.getvalue())
    assert resp.status_code == 413 and "exceeds the limit" in resp.json()["detail"]
    nii = write_nifti(tmp_path / "b.nii.gz", np.zeros((200, 200, 200), np.float32)).read_bytes()
    assert len(nii) < 200_000
    assert _post(server, "b.nii.gz", nii).status_code == 413


def test_request_shape_errors(server: Server) -> None:
    resp = httpx.post(f"{server.url}/api/v1/predict", content=b"raw", timeout=30)
    assert resp.status_code == 415 and "multipart" in resp.json()["detail"]
    resp = httpx.post(f"{server.url}/api/v1/predict", files={"other": ("a.png", _png())})
    assert resp.status_code == 422 and "'file'" in resp.json()["detail"]
    resp = _post(server, "a.png", _png(), slice="two")
    assert resp.status_code == 422 and "integer" in resp.json()["detail"]
    resp = httpx.post(f"{server.url}/api/v1/predict", content=b"--xyz\r\nbroken",
                      headers={"content-type": "multipart/form-data; boundary=xyz"}, timeout=30)
    assert resp.status_code == 422 and "file" in resp.json()["detail"]
    two = [("file", ("a.png", _png())), ("file", ("b.png", _png()))]
    resp = httpx.post(f"{server.url}/api/v1/predict", files=two, timeout=30)
    assert resp.status_code == 422 and "files" in resp.json()["detail"].lower()


def test_paths_in_filenames_are_never_used(server: Server) -> None:
    resp = _post(server, "../../etc/cron.d/evil.png", _png())
    assert resp.status_code == 200 and resp.json()["filename"] == "evil.png"
    assert not list(server.tmpdir.rglob("*"))  # nothing written: uploads stay in memory


def test_uploads_never_touch_disk(server: Server) -> None:
    big = np.random.default_rng(3).integers(0, 255, (1200, 1200), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, "PNG", compress_level=0)
    # Starlette spools parts over 1 MiB to a temporary file by default
    assert len(buf.getvalue()) > 1024 * 1024
    assert _post(server, "big.png", buf.getvalue()).status_code == 200
    assert not list(server.tmpdir.rglob("*"))


def test_concurrent_requests(server: Server, tmp_path: Path) -> None:
    payloads = list(_formats(tmp_path).items()) * 3
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda item: _post(server, *item), payloads))
    assert all(r.status_code == 200 for r in results)
    by_name: dict[str, dict[str, float]] = {}
    for (name, _), r in zip(payloads, results, strict=True):
        probs = r.json()["probabilities"]
        if name in by_name:  # same input, same answer, whatever ran beside it
            assert probs == pytest.approx(by_name[name], abs=1e-6)
        by_name[name] = probs


def test_rle_roundtrip() -> None:
    for mask in (np.zeros((3, 4), bool), np.ones((3, 4), bool),
                 np.random.default_rng(4).random((17, 13)) > 0.5):
        rle = rle_encode(mask)
        assert sum(rle["counts"]) == mask.size
        np.testing.assert_array_equal(rle_decode(rle), mask)


def test_save_uploads_is_opt_in_and_never_uses_the_client_name(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from fixtures import save_random_model
    from tumorscope.serve.app import ServeSettings, create_app

    kept = tmp_path / "kept"
    kept.mkdir()
    app = create_app(ServeSettings(save_random_model(tmp_path / "model"), save_uploads=kept,
                                   backend="torch", allowed_hosts=("testserver",)))
    with TestClient(app) as client:
        png = _png()
        resp = client.post("/api/v1/predict", files={"file": ("../../etc/evil.png", png)})
        assert resp.status_code == 200
        upload_id = resp.json()["upload_id"]
        assert [p.name for p in kept.iterdir()] == [f"{upload_id}.png"]
        assert (kept / f"{upload_id}.png").read_bytes() == png
        refused = client.post("/api/v1/predict", files={"file": ("notes.txt", b"text")})
        assert refused.status_code == 415
        assert len(list(kept.iterdir())) == 1  # refused uploads are not kept


def test_a_classifier_answers_without_mask_fields(tmp_path: Path) -> None:
    from conftest_server import start_server
    from fixtures import save_random_classifier

    live, proc = start_server(tmp_path, model=save_random_classifier(tmp_path / "classifier"))
    try:
        body = _post(live, "scan.png", _png()).json()
        assert body["segmentation"] is False
        assert body["mask_png_base64"] is None and body["mask_rle"] is None
        assert body["tumour_area_pixels"] is None and body["bounding_box"] is None
        assert set(body["probabilities"]) == {"no tumour", "tumour"}
        found = body["probabilities"]["tumour"] >= 0.5
        assert body["tumour_found"] is found
        assert body["predicted_class"] == ("tumour" if found else "no tumour")
        assert body["message"].startswith("Tumour found" if found else "No tumour found")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
