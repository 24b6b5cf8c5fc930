"""Regression tests from the outside audit (inputs generated here): no 500s on odd files,
no answer for images without content, no overwritten outputs, one-line errors, the encoder
stays frozen under every scheduler."""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import httpx
import numpy as np
import pytest
from PIL import Image

from conftest_server import Server
from fixtures import cli, save_random_model, write_figshare_mat, write_nifti
from tumorscope.errors import ScanReadError
from tumorscope.io import read_scan


def _mat_with_image_group(path: Path) -> Path:
    write_figshare_mat(path, np.ones((16, 16), np.int16), 1, "P1")
    with h5py.File(path, "r+") as f:
        del f["cjdata/image"]
        f["cjdata"].create_group("image")
    return path


def _complex_mat(path: Path) -> Path:
    write_figshare_mat(path, np.ones((16, 16), np.int16), 1, "P1")
    with h5py.File(path, "r+") as f:
        del f["cjdata/image"]
        f["cjdata"].create_dataset("image", data=np.ones((16, 16)) * (1 + 2j))
    return path


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def test_odd_files_are_one_line_errors(tmp_path: Path) -> None:
    five_d = write_nifti(tmp_path / "5d.nii.gz", np.ones((32, 32, 4, 2, 3), np.float32))
    with pytest.raises(ScanReadError, match=r"unsupported shape \(32, 32, 4, 2, 3\)"):
        read_scan(five_d)
    squeezable = write_nifti(tmp_path / "ok.nii.gz", np.ones((8, 9, 4, 1, 2), np.float32))
    assert read_scan(squeezable).array.shape == (2, 8, 9, 4)  # empty axis dropped, C first
    with pytest.raises(ScanReadError, match="'cjdata/image' is a group"):
        read_scan(_mat_with_image_group(tmp_path / "group.mat"))
    with pytest.raises(ScanReadError, match="complex-valued"):
        read_scan(_complex_mat(tmp_path / "complex.mat"))
    model = save_random_model(tmp_path / "m")
    for bad in (five_d, tmp_path / "group.mat"):
        res = cli("predict", str(bad), "--checkpoint", str(model), "--out",
                  str(tmp_path / "o"), cwd=tmp_path)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert bad.name in res.stderr and "Traceback" not in res.stderr


def test_server_answers_4xx_not_500(server: Server, tmp_path: Path) -> None:
    def post(name: str, data: bytes, **form: str) -> httpx.Response:
        return httpx.post(f"{server.url}/api/v1/predict", files={"file": (name, data)},
                          data=form, timeout=60)

    five_d = write_nifti(tmp_path / "5d.nii.gz", np.ones((32, 32, 4, 2, 3), np.float32))
    cases = {"5d.nii.gz": (five_d.read_bytes(), {}),
             "group.mat": (_mat_with_image_group(tmp_path / "g.mat").read_bytes(), {}),
             "black.png": (_png(np.zeros((64, 64), np.uint8)), {}),
             "dot.png": (_png(np.full((1, 1), 200, np.uint8)), {}),
             "scan.png": (_png(np.random.default_rng(0).integers(0, 255, (40, 48), np.uint8)),
                          {"slice": "²"})}
    for name, (data, form) in cases.items():
        res = post(name, data, **form)
        assert res.status_code == 422, (name, res.status_code, res.text)
        detail = res.json()["detail"]
        assert "object at 0x" not in detail and "\n" not in detail


def test_images_without_content_get_no_answer(tmp_path: Path) -> None:
    model = save_random_model(tmp_path / "m")
    for name, pixels in (("black.png", np.zeros((64, 64), np.uint8)),
                         ("grey.png", np.full((64, 64), 90, np.uint8)),
                         ("dot.png", np.full((1, 1), 200, np.uint8))):
        (tmp_path / name).write_bytes(_png(pixels))
        res = cli("predict", str(tmp_path / name), "--checkpoint", str(model), "--out",
                  str(tmp_path / "o"), cwd=tmp_path)
        assert res.returncode == 2, res.stdout
        assert "no content" in res.stderr or "too small" in res.stderr
    assert not (tmp_path / "o").exists()  # nothing written for a refused input


def test_threshold_out_folder_and_same_names(tmp_path: Path) -> None:
    model = save_random_model(tmp_path / "m")
    rng = np.random.default_rng(0)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "scan.png").write_bytes(
            _png(rng.integers(0, 255, (40, 48), np.uint8)))
    args = [str(tmp_path / "a" / "scan.png"), str(tmp_path / "b" / "scan.png"),
            "--checkpoint", str(model)]
    for value in ("nan", "5", "-1", "0"):
        res = cli("predict", *args, "--threshold", value, cwd=tmp_path)
        assert res.returncode == 2 and "strictly between 0 and 1" in res.stderr, value
    (tmp_path / "file").write_text("x")
    res = cli("predict", *args, "--out", str(tmp_path / "file"), cwd=tmp_path)
    assert res.returncode == 2 and "--out is a file" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = cli("predict", *args, "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "o" / "a_scan.json").is_file() and (tmp_path / "o" / "b_scan.json").is_file()
    assert len(list((tmp_path / "o").glob("*_overlay.png"))) == 2  # nothing overwritten


@pytest.mark.slow
def test_frozen_encoder_under_reduce_on_plateau(tmp_path: Path, mat_dataset: Path) -> None:
    import lightning as L
    import torch

    from fixtures import write_config
    from tumorscope.config import load_config
    from tumorscope.training.run import train

    snapshots: dict[str, list[dict[str, torch.Tensor]]] = {"encoder": [], "decoder": []}

    class Snapshot(L.Callback):
        def _take(self, module: L.LightningModule) -> None:
            for part in snapshots:
                snapshots[part].append({k: v.detach().clone() for k, v in
                                        getattr(module.model, part).state_dict().items()})

        def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            self._take(pl_module)

        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            self._take(pl_module)

    cfg = load_config(write_config(tmp_path, mat_dataset, epochs=2),
                      ["scheduler.name=plateau", "optim.freeze_encoder_epochs=1",
                       "ema.enabled=false", "model.attention=none", "model.dropout=0"])
    train(cfg, callbacks=[Snapshot()])
    start, after_frozen, after_free = snapshots["encoder"]
    weights = [k for k in start if start[k].is_floating_point() and "running" not in k]
    assert all(torch.equal(start[k], after_frozen[k]) for k in weights)  # frozen in epoch 0
    assert any(not torch.equal(after_frozen[k], after_free[k]) for k in weights)  # then learns
    dec_start, dec_frozen, _ = snapshots["decoder"]
    assert any(not torch.equal(dec_start[k], dec_frozen[k]) for k in dec_start)


def test_model_files_are_checked_before_use(tmp_path: Path) -> None:
    import torch

    from tumorscope.checkpoint.store import load_checkpoint, save_checkpoint
    from tumorscope.errors import CheckpointError
    from tumorscope.models import build_joint

    model = save_random_model(tmp_path / "m")
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # one bit pattern changed inside the last tensor: still a readable file
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="differs from the card's weights_sha256"):
        load_checkpoint(model)

    state = build_joint("unet", "resnet18", 3).state_dict()
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
             for k, v in state.items()}
    card = {"name": "nan", "task": "joint", "classes": ["a", "b", "c"],
            "model": {"arch": "unet", "encoder": "resnet18", "encoder_weights": None,
                      "attention": "none", "in_channels": 1, "dropout": 0.0},
            "preprocessing": {"input_size": 64, "in_channels": 1}}
    save_checkpoint(tmp_path / "nan", state, card)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint(tmp_path / "nan")
    res = cli("serve", "--checkpoint", str(tmp_path / "nan"), "--port", "1", cwd=tmp_path)
    assert res.returncode == 2 and "NaN or infinite" in res.stderr  # never starts serving


def test_exposed_server_key_hosts_and_cors(tmp_path: Path) -> None:
    from conftest_server import start_server

    key = "k" * 8 + "0123456789abcdef"
    (tmp_path / "key").write_text(key + "\n")
    live, proc = start_server(tmp_path, "--api-key-file", str(tmp_path / "key"),
                              "--cors-origins", "https://viewer.example")
    try:
        png = _png(np.random.default_rng(0).integers(0, 255, (40, 48), np.uint8))
        url = f"{live.url}/api/v1/predict"
        assert httpx.post(url, files={"file": ("a.png", png)}).status_code == 401
        wrong = httpx.post(url, files={"file": ("a.png", png)}, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401 and "X-API-Key" in wrong.json()["detail"]
        ok = httpx.post(url, files={"file": ("a.png", png)}, headers={"X-API-Key": key},
                        timeout=60)
        assert ok.status_code == 200, ok.text
        assert httpx.get(f"{live.url}/health").status_code == 200  # probes stay open
        evil = httpx.get(f"{live.url}/health", headers={"Host": "evil.example"})
        assert evil.status_code == 400  # DNS rebinding: a foreign Host header is refused
        cors = httpx.options(url, headers={"Origin": "https://viewer.example",
                                           "Access-Control-Request-Method": "POST"})
        assert cors.headers.get("access-control-allow-origin") == "https://viewer.example"
        other = httpx.options(url, headers={"Origin": "https://evil.example",
                                            "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_server_without_cors_sends_no_cors_headers(server: Server) -> None:
    res = httpx.get(f"{server.url}/api/v1/models", headers={"Origin": "https://evil.example"})
    assert res.status_code == 200 and "access-control-allow-origin" not in res.headers


def test_error_messages_never_show_object_reprs() -> None:
    from tumorscope.io import read_scan_bytes

    with pytest.raises(ScanReadError) as err:
        read_scan_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, "x.png")
    assert "object at 0x" not in str(err.value) and "x.png" in str(err.value)


def test_stacks_and_huge_images_are_refused(tmp_path: Path) -> None:
    import tifffile

    from tumorscope.errors import ImageTooLargeError

    tifffile.imwrite(tmp_path / "stack.tif", np.ones((10, 32, 32), np.uint8))
    with pytest.raises(ScanReadError, match="TIFF holds 10 pages"):
        read_scan(tmp_path / "stack.tif")
    Image.fromarray(np.zeros((9000, 9000), np.uint8)).save(tmp_path / "huge.png")
    with pytest.raises(ImageTooLargeError):  # the CLI's limit is the server's: 64 Mi pixels
        read_scan(tmp_path / "huge.png")


def test_library_noise_stays_out_of_the_one_line(tmp_path: Path) -> None:
    from pydicom import dcmread
    from pydicom.encaps import encapsulate

    from fixtures import write_dicom

    plain = write_dicom(tmp_path / "a.dcm", np.full((32, 32), 100, np.uint16)
                        + np.arange(32, dtype=np.uint16))
    ds = dcmread(plain)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"  # JPEG 2000, not really
    ds.PixelData = encapsulate([b"\x00" * 100])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "j2k.dcm", enforce_file_format=True)
    slope = dcmread(plain)
    slope.RescaleSlope = "1e308"  # overflows when rescaled
    slope.save_as(tmp_path / "slope.dcm", enforce_file_format=True)
    model = save_random_model(tmp_path / "m")
    for bad, why in (("j2k.dcm", "cannot decode DICOM pixel data"), ("slope.dcm", "infinite")):
        res = cli("predict", str(tmp_path / bad), "--checkpoint", str(model), cwd=tmp_path)
        assert res.returncode == 2 and why in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr  # no library traceback
        assert "object at 0x" not in res.stderr
    verbose = cli("-v", "predict", str(tmp_path / "j2k.dcm"), "--checkpoint", str(model),
                  cwd=tmp_path)
    assert "pydicom" in verbose.stderr  # kept for the debug log


def test_crafted_cards_are_one_line(tmp_path: Path) -> None:
    from tumorscope.checkpoint.store import read_card
    from tumorscope.errors import CheckpointError

    model = save_random_model(tmp_path / "m")
    for text, why in (("42", "must be a JSON object"), ('"card"', "must be a JSON object"),
                      ("[" * 100_000 + "]" * 100_000, "nested too deeply")):
        (model / "model.json").write_text(text)
        with pytest.raises(CheckpointError, match=why):
            read_card(model)
        res = cli("info", "--checkpoint", str(model), cwd=tmp_path)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
