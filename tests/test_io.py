"""Every reader on fixtures written in the real format, and every bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures import write_dicom, write_figshare_mat, write_nifti
from tumorscope.errors import ScanReadError
from tumorscope.io import read_mask, read_scan, stack_modalities


def test_png_16bit_keeps_range(tmp_path: Path) -> None:
    pixels = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 17)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    scan = read_scan(tmp_path / "a.png")
    assert scan.array.shape == (1, 64, 48)
    assert scan.array.max() == pixels.max() > 255
    np.testing.assert_array_equal(scan.array[0], pixels)


def test_rgb_jpeg_is_channels_first(tmp_path: Path) -> None:
    rgb = np.zeros((32, 40, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    scan = read_scan(tmp_path / "a.jpg")
    assert scan.array.shape == (3, 32, 40)
    assert abs(int(scan.array[0].mean()) - 200) < 5 and scan.array[2].mean() < 10


@pytest.mark.parametrize("compression", [None, "jpeg", "zlib"])
def test_tiff_multichannel(tmp_path: Path, compression: str | None) -> None:
    import tifffile

    rgb = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", rgb, photometric="rgb", compression=compression)
    scan = read_scan(tmp_path / "a.tif")
    assert scan.array.shape == (3, 24, 24)
    if compression != "jpeg":
        np.testing.assert_array_equal(np.moveaxis(scan.array, 0, -1), rgb)


def test_tiff_16bit_gray(tmp_path: Path) -> None:
    import tifffile

    pixels = np.arange(100, dtype=np.uint16).reshape(10, 10) * 600
    tifffile.imwrite(tmp_path / "a.tiff", pixels)
    np.testing.assert_array_equal(read_scan(tmp_path / "a.tiff").array[0], pixels)


def test_figshare_mat_is_transposed_back(tmp_path: Path) -> None:
    image = np.arange(20 * 30, dtype=np.int16).reshape(20, 30)  # non-square: catches transposes
    mask = np.zeros((20, 30), bool)
    mask[2:5, 10:20] = True
    path = write_figshare_mat(tmp_path / "7.mat", image, 2, "MRN123", mask)
    scan = read_scan(path)
    assert scan.array.shape == (1, 20, 30)
    np.testing.assert_array_equal(scan.array[0], image)
    np.testing.assert_array_equal(scan.mask, mask)
    assert scan.meta["label"] == 2 and scan.meta["label_name"] == "glioma"
    assert scan.meta["patient"] == "MRN123"
    assert scan.format == "figshare-mat"


def test_dicom_rescale_and_spacing(tmp_path: Path) -> None:
    stored = np.array([[0, 100], [200, 300]], np.uint16)
    path = write_dicom(tmp_path / "a.dcm", stored, slope=2.0, intercept=-50, spacing=(0.7, 0.8))
    scan = read_scan(path)
    np.testing.assert_allclose(scan.array[0], stored * 2.0 - 50)
    assert scan.spacing == pytest.approx((0.7, 0.8))
    assert scan.meta["modality"] == "MR"


def test_dicom_monochrome1_is_inverted(tmp_path: Path) -> None:
    stored = np.array([[0, 10], [20, 30]], np.uint16)
    scan = read_scan(write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1"))
    np.testing.assert_allclose(scan.array[0], 30 - stored.astype(float))


def test_dicom_without_suffix_is_sniffed(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "IM0001", np.ones((4, 4), np.uint16))
    assert read_scan(path).format == "dicom"


def test_nifti_volume_keeps_affine_and_spacing(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=(12, 10, 6)).astype(np.float32)
    path = write_nifti(tmp_path / "v.nii.gz", data, zooms=(0.9, 0.9, 3.0))
    scan = read_scan(path)
    assert scan.is_volume and scan.array.shape == (1, 12, 10, 6)
    assert scan.spacing == pytest.approx((0.9, 0.9, 3.0))
    np.testing.assert_allclose(np.diag(scan.affine)[:3], (0.9, 0.9, 3.0))
    sl = scan.slice(2)
    assert sl.array.shape == (1, 12, 10) and sl.spacing == pytest.approx((0.9, 0.9))


def test_nifti_2d_slice(tmp_path: Path) -> None:
    scan = read_scan(write_nifti(tmp_path / "s.nii", np.ones((8, 9, 1), np.int16)))
    assert not scan.is_volume and scan.array.shape == (1, 8, 9)


def test_stack_modalities(tmp_path: Path) -> None:
    scans = {m: read_scan(write_nifti(tmp_path / f"{m}.nii.gz", np.full((4, 4, 3), i, np.int16)))
             for i, m in enumerate(["t1", "t1ce", "t2", "flair"])}
    stacked = stack_modalities(scans)
    assert stacked.array.shape == (4, 4, 4, 3) and stacked.channel_names == ("t1", "t1ce", "t2",
                                                                             "flair")
    assert stacked.array[3].max() == 3


# -- bad input: one clear error naming the file --------------------------------------------------

def _expect_error(path: Path, fragment: str) -> None:
    with pytest.raises(ScanReadError) as info:
        read_scan(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nope.png", "file not found")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    _expect_error(tmp_path / "empty.png", "empty")


def test_text_file_named_dcm(tmp_path: Path) -> None:
    (tmp_path / "fake.dcm").write_text("this is not a DICOM file\n" * 10)
    _expect_error(tmp_path / "fake.dcm", "DICOM")


def test_truncated_mat(tmp_path: Path) -> None:
    path = write_figshare_mat(tmp_path / "t.mat", np.ones((16, 16), np.int16), 1, "P1")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    _expect_error(path, "MATLAB")


def test_mat_without_cjdata(tmp_path: Path) -> None:
    import h5py

    with h5py.File(tmp_path / "other.mat", "w") as f:
        f["x"] = np.ones(3)
    _expect_error(tmp_path / "other.mat", "cjdata")


def test_unsupported_suffix(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    _expect_error(tmp_path / "notes.txt", "unsupported file type")


def test_corrupt_png(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    _expect_error(tmp_path / "bad.png", "not a readable image")


def test_nan_pixels(tmp_path: Path) -> None:
    data = np.ones((8, 8, 4), np.float32)
    data[1, 1, 1] = np.nan
    _expect_error(write_nifti(tmp_path / "nan.nii.gz", data), "NaN")


def test_zero_size_image(tmp_path: Path) -> None:
    _expect_error(write_nifti(tmp_path / "zero.nii", np.zeros((0, 8, 4), np.float32)), "zero size")


def test_mask_of_another_size(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(ScanReadError, match=r"m\.png: mask shape \(10, 12\) differs"):
        read_mask(tmp_path / "m.png", expected_shape=(10, 10))


# -- in-memory reading (uploads) and size limits --------------------------------------------------

def _all_formats(tmp_path: Path) -> list[Path]:
    import tifffile

    Image.fromarray(np.arange(256, dtype=np.uint16).reshape(16, 16) * 200).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a.tif", np.ones((8, 8, 3), np.uint8), photometric="rgb")
    return [tmp_path / "a.png", tmp_path / "a.tif",
            write_figshare_mat(tmp_path / "a.mat", np.ones((6, 7), np.int16), 3, "P9"),
            write_dicom(tmp_path / "a.dcm", np.arange(16, dtype=np.uint16).reshape(4, 4)),
            write_nifti(tmp_path / "a.nii.gz", np.ones((5, 6, 7), np.float32)),
            write_nifti(tmp_path / "b.nii", np.ones((5, 6, 1), np.int16))]


def test_bytes_reader_matches_file_reader(tmp_path: Path) -> None:
    from tumorscope.io import read_scan_bytes

    for path in _all_formats(tmp_path):
        from_file = read_scan(path)
        from_bytes = read_scan_bytes(path.read_bytes(), f"uploads/../{path.name}")
        np.testing.assert_array_equal(from_file.array, from_bytes.array)
        assert from_bytes.path == Path(path.name)  # only the base name is ever kept


def test_oversized_images_are_refused_before_decoding(tmp_path: Path) -> None:
    from tumorscope.io import read_scan_bytes

    for path in _all_formats(tmp_path):
        with pytest.raises(ScanReadError, match="exceeds the limit"):
            read_scan_bytes(path.read_bytes(), path.name, max_elements=10)


def test_gzip_bomb_nifti_is_refused(tmp_path: Path) -> None:
    from tumorscope.io import read_scan_bytes

    path = write_nifti(tmp_path / "bomb.nii.gz", np.zeros((160, 160, 160), np.float64))
    assert path.stat().st_size < 200_000  # 32 MB of voxels packed small
    with pytest.raises(ScanReadError, match="decompression bomb"):
        read_scan_bytes(path.read_bytes(), path.name, max_elements=100_000)
