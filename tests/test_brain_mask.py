"""The classical 2D brain mask (``transforms/brain_mask.py``) and the ``augment.skull_strip``
option: scalp and skull are removed from a head with a skull, an already stripped slice keeps
itself, blank input is harmless, and the augmentation refuses to cut a tumour away."""

from __future__ import annotations

import numpy as np
import pytest

SIZE = 160


def head(skull: bool = True, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An axial 'head' in [0, 1]: bright scalp, dark bone, grey brain with two dark ventricles
    (brain only when ``skull`` is False), noisy; and the true brain and scalp regions."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    r = np.sqrt(((xx - 80) / 62) ** 2 + ((yy - 80) / 72) ** 2)
    brain = r < 0.84
    scalp = (r >= 0.92) & (r < 1.0)
    image = np.where(brain, 0.45, 0.0)
    for side in (-1, 1):
        image[((xx - 80 - side * 14) / 6) ** 2 + ((yy - 74) / 16) ** 2 < 1] = 0.15
    if skull:
        image[scalp] = 0.85
        image[(r >= 0.84) & (r < 0.92)] = 0.05  # bone: dark on MRI
    image = image + np.random.default_rng(seed).normal(0, 0.02, image.shape)
    return np.clip(image, 0, 1).astype(np.float32), brain, scalp


def test_scalp_and_skull_are_removed_and_the_brain_kept() -> None:
    from tumorscope.transforms.brain_mask import brain_mask, strip_skull

    image, brain, scalp = head()
    mask = brain_mask(image)
    assert (mask & brain).sum() >= 0.95 * brain.sum()
    assert (mask & scalp).sum() <= 0.02 * scalp.sum()
    stripped = strip_skull(image)
    assert stripped.shape == image.shape and float(stripped[scalp].max()) == 0.0
    assert np.array_equal(stripped[mask], image[mask])
    three = strip_skull(np.repeat(image[..., None], 3, axis=2))
    assert three.shape == (SIZE, SIZE, 3) and np.array_equal(three[..., 1], stripped)


def test_an_already_stripped_slice_keeps_itself() -> None:
    from tumorscope.transforms.brain_mask import brain_mask

    image, brain, _ = head(skull=False)
    mask = brain_mask(image)
    assert (mask & brain).sum() >= 0.97 * brain.sum()
    assert (mask & ~brain).sum() <= 0.02 * brain.sum()


@pytest.mark.parametrize("value", [0.0, 0.5])
def test_blank_input_is_harmless(value: float) -> None:
    from tumorscope.transforms.brain_mask import brain_mask

    mask = brain_mask(np.full((32, 32), value, np.float32))
    assert mask.shape == (32, 32) and mask.dtype == bool


def test_the_augmentation_strips_but_never_cuts_a_tumour_away() -> None:
    from tumorscope.config import Augment2DConfig
    from tumorscope.transforms.augment import build_augment

    strip = build_augment(Augment2DConfig(hflip=0, rotate=0, scale=0, shift=0,
                                          brightness_contrast=0, skull_strip=1))
    assert strip is not None
    image, _, scalp = head()
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    inside = ((xx - 60) ** 2 + (yy - 100) ** 2 < 64).astype(np.uint8)
    out = strip(image=image[..., None], mask=inside)
    assert float(out["image"][..., 0][scalp].max()) == 0.0
    assert np.array_equal(out["mask"], inside)
    # a lesion in the scalp (as a meningioma or pituitary tumour may be cut by the mask):
    # the slice stays as it is, so its label still holds
    outside = scalp & (xx < 40)
    out = strip(image=image[..., None], mask=outside.astype(np.uint8))
    assert np.array_equal(out["image"][..., 0], image) and out["mask"].sum() == outside.sum()
    # off by default, and a probability below 1 leaves some slices untouched
    assert Augment2DConfig().skull_strip == 0
    some = build_augment(Augment2DConfig(hflip=0, rotate=0, scale=0, shift=0,
                                         brightness_contrast=0, skull_strip=0.5))
    assert some is not None
    changed = []
    for seed in range(12):
        some.set_random_seed(seed)
        changed.append(not np.array_equal(
            some(image=image[..., None], mask=inside)["image"][..., 0], image))
    assert 0 < sum(changed) < 12
