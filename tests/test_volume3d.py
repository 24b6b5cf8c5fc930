"""3D preprocessing: normalisation inside the brain, crop, resampling, and the inverse that
puts predictions back on the input grid exactly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fixtures import brats_labels
from tumorscope.brats_metrics import dice
from tumorscope.transforms.volume3d import VolumePreprocessing


def _volume(shape: tuple[int, int, int] = (40, 36, 20)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    brain = np.zeros(shape, bool)
    brain[6:34, 5:30, 3:17] = True
    image = np.stack([(rng.normal(100 * (k + 1), 10, shape)) * brain for k in range(4)])
    labels = np.zeros(shape, np.uint8)
    labels[10:34, 8:28, 2:18] = brats_labels((24, 20, 16))
    labels[~brain] = 0
    return image.astype(np.float32), labels


def test_normalised_inside_the_brain_only() -> None:
    image, _ = _volume()
    image[0, 20, 20, 10] = 1e6  # a hot voxel is clipped, not allowed to squash the rest
    pre = VolumePreprocessing(crop_to_brain=False)
    out, geometry = pre(image, (1, 1, 1))
    brain = image[1] != 0
    assert geometry.grid == geometry.shape == (40, 36, 20)
    for channel in out:
        assert abs(float(channel[brain].mean())) < 1e-4
        assert float(channel[brain].std()) == pytest.approx(1.0, abs=1e-3)
        assert not channel[~brain].any()
    assert out[0].max() < 4  # the 1e6 voxel was clipped to the 99.5th percentile


def test_crop_then_invert_is_exact_without_resampling() -> None:
    image, labels = _volume()
    pre = VolumePreprocessing(margin=2)
    out, geometry = pre(image, (1, 1, 1))
    assert geometry.box == ((4, 36), (3, 32), (1, 19)) and out.shape == (4, 32, 29, 18)
    on_grid = pre.labels(labels, geometry)
    assert np.array_equal(pre.invert(on_grid, geometry, labels=True), labels)


def test_resampled_prediction_lands_back_on_the_input_grid() -> None:
    """Anisotropic input (1 x 1 x 2 mm) resampled to 2 mm for the network and back."""
    image, labels = _volume()
    pre = VolumePreprocessing(spacing=(2.0, 2.0, 2.0))
    out, geometry = pre(image, (1.0, 1.0, 2.0))
    assert geometry.grid == (16, 14, 18) and out.shape == (4, 16, 14, 18)
    back = pre.invert(pre.labels(labels, geometry), geometry, labels=True)
    assert back.shape == labels.shape
    for region in ((1, 2, 3), (1, 3)):
        a, b = np.isin(back, region), np.isin(labels, region)
        assert dice(a, b) > 0.8
        shift = np.subtract(ndimage.center_of_mass(a), ndimage.center_of_mass(b))
        assert np.abs(shift).max() < 1.0  # aligned: no half-voxel drift


def test_probabilities_invert_with_background_outside_the_crop() -> None:
    image, _ = _volume()
    pre = VolumePreprocessing(spacing=(2.0, 2.0, 1.0))
    _, geometry = pre(image, (1, 1, 1))
    probs = np.full((3, *geometry.grid), 0.7, np.float32)
    back = pre.invert(probs, geometry)
    assert back.shape == (3, 40, 36, 20)
    inside = tuple(slice(a, b) for a, b in geometry.box)
    assert np.allclose(back[(slice(None), *inside)], 0.7)
    assert back.sum() == pytest.approx(0.7 * 3 * np.prod(geometry.cropped), rel=1e-5)
    with pytest.raises(ValueError, match="grid"):
        pre.invert(np.zeros((3, 5, 5, 5), np.float32), geometry)


def test_specks_far_from_the_tumour_are_dropped() -> None:
    from tumorscope.inference.brats import drop_specks

    labels = np.zeros((30, 30, 30), np.uint8)
    labels[5:15, 5:15, 5:15] = 2  # the tumour: 1000 voxels
    labels[8:12, 8:12, 8:12] = 3
    labels[25:27, 25:27, 25:27] = 2  # 8 voxels elsewhere: below 10% of the largest
    labels[20:25, 2:7, 20:25] = 1  # 125 voxels: kept
    out = drop_specks(labels)
    assert out[25:27, 25:27, 25:27].sum() == 0
    assert np.array_equal(out[:20], labels[:20]) and out[20:25, 2:7, 20:25].all()
    assert np.array_equal(drop_specks(np.zeros_like(labels)), np.zeros_like(labels))
