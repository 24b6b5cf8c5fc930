"""Bounded memory under worst-case uploads (the peak itself is measured in
benchmarks/memory_api.py): a decode budget shared across requests and reserved from the
header before allocation, large slices shrunk right after decoding, refused uploads freed."""

from __future__ import annotations

import io
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest_server import Server
from fixtures import cli, save_random_model, write_nifti
from tumorscope.errors import BusyError, ImageTooLargeError
from tumorscope.inference.predictor import Predictor
from tumorscope.io import read_scan_bytes
from tumorscope.io.scan import DEFAULT_MAX_ELEMENTS, DecodeBudget, Scan, shrink
from tumorscope.serve.app import ServeSettings, Upload, _predict


def _png(side: int) -> bytes:
    yy, xx = np.ogrid[:side, :side]
    disc = ((yy - side / 2) ** 2 + (xx - side / 2) ** 2 < (side / 4) ** 2).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(disc * 200).save(buf, "PNG")
    return buf.getvalue()


def test_default_pixel_limit_fits_mri_not_bombs(tmp_path: Path) -> None:
    """4096x4096 is plenty for MRI: one pixel more is refused, before decoding, by default."""
    Image.new("L", (4097, 4096)).save(tmp_path / "bomb.png")
    out = cli("predict", str(tmp_path / "bomb.png"), "--out", str(tmp_path / "o"),
              "--checkpoint", str(save_random_model(tmp_path / "m")), cwd=tmp_path)
    assert out.returncode == 2 and f"limit of {DEFAULT_MAX_ELEMENTS:,}" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_a_decode_waits_for_room_in_the_shared_budget() -> None:
    budget = DecodeBudget(capacity=64 * 64 + 10, wait_s=60)
    png = _png(64)
    first_holds, second_done = threading.Event(), threading.Event()
    release_first = threading.Event()

    def first() -> None:
        with budget.held():
            read_scan_bytes(png, "a.png")
            first_holds.set()
            release_first.wait(60)

    def second() -> None:
        with budget.held():
            read_scan_bytes(png, "b.png")
        second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert first_holds.wait(60)
    threads[1].start()
    assert not second_done.wait(0.5)  # no room: the second decode waits
    assert budget.used == 64 * 64
    release_first.set()
    assert second_done.wait(60)
    for t in threads:
        t.join()
    assert budget.used == 0


def test_the_budget_is_reserved_from_the_header_before_pixels_exist(tmp_path: Path) -> None:
    """A compressed volume whose voxels exceed the budget is refused before it is inflated."""
    nii = write_nifti(tmp_path / "v.nii.gz", np.zeros((64, 64, 64), np.float32)).read_bytes()
    budget = DecodeBudget(capacity=1000, wait_s=0.05)
    with pytest.raises(ImageTooLargeError, match="decode budget of 1,000"), budget.held():
        read_scan_bytes(nii, "v.nii.gz")  # can never fit: refused at once, nothing inflated
    busy = DecodeBudget(capacity=64 ** 3, wait_s=0.05)
    with busy.held():
        read_scan_bytes(nii, "a.nii.gz")
        with pytest.raises(BusyError, match="try again"):  # fits, but the budget is taken
            _decode_elsewhere(busy, nii)
    assert budget.used == busy.used == 0
    assert read_scan_bytes(nii, "v.nii.gz").spatial_shape == (64, 64, 64)  # no budget: fine


def _decode_elsewhere(budget: DecodeBudget, data: bytes) -> None:
    """Decode in another context (as another request would), re-raising its error here."""
    import contextvars

    errors: list[BaseException] = []

    def run() -> None:
        try:
            with budget.held():
                read_scan_bytes(data, "b.nii.gz")
        except BaseException as err:  # handed back to the test
            errors.append(err)

    thread = threading.Thread(target=contextvars.Context().run, args=(run,))
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def test_shrink_keeps_geometry_consistent() -> None:
    scan = Scan(np.zeros((3, 3000, 1500), np.uint8), (0.5, 0.25), None, "png",
                mask=np.ones((3000, 1500), bool))
    small = shrink(scan, 1000)
    assert small.array.shape == (3, 1000, 500) and small.mask is not None
    assert small.mask.shape == (1000, 500)
    assert small.spacing == pytest.approx((1.5, 0.75))
    assert small.meta["original_shape"] == (3000, 1500)
    assert shrink(Scan(np.zeros((1, 512, 512), np.int32)), 1000).array.dtype == np.int32


def test_a_refused_upload_is_not_kept_alive(tmp_path: Path) -> None:
    """A user error comes back from the worker as a value: no traceback (and no reference
    cycle) keeps the upload's bytes once the request is answered."""
    predictor = Predictor.from_checkpoint(save_random_model(tmp_path / "m"))
    settings = ServeSettings(checkpoint=tmp_path / "m")
    data = bytes(np.random.default_rng(0).integers(0, 256, 100_000, np.uint8))
    before = sys.getrefcount(data)
    answer = _predict(predictor, Upload("junk.png", data), settings, DecodeBudget(1 << 20))
    assert isinstance(answer, tuple) and answer[0] == 422 and "junk.png" in answer[1]
    assert sys.getrefcount(data) == before


def test_large_slices_are_shrunk_and_say_so(server: Server, tmp_path: Path) -> None:
    resp = httpx.post(f"{server.url}/api/v1/predict",
                      files={"file": ("big.png", _png(2048))}, timeout=120)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["shape"] == [1024, 1024] and body["original_shape"] == [2048, 2048]
    assert body["mask_rle"]["size"] == [1024, 1024]
    small = httpx.post(f"{server.url}/api/v1/predict", files={"file": ("s.png", _png(300))},
                       timeout=60).json()
    assert small["shape"] == small["original_shape"] == [300, 300]
