"""Pseudo-healthy slices (``transforms/pseudo_healthy.py``) and the ``mri-mix-mirror``
collection: the axis is found on an off-centre head, a one-sided tumour is replaced by the
mirrored healthy side and nothing else changes, slices that do not qualify are refused, and
the mirrored records are "no tumour" slices in their patient's fold with an empty mask."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

SIZE = 128


def head_slice(centre: float, tumour_x: float, tumour_r: float = 7.0,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A symmetric axial 'head' (skull ring, brain, two ventricles) centred at column
    ``centre``, noisy, with a bright round tumour at column ``tumour_x``; uint8 (1,H,W)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    dx, dy = (xx - centre) / 44, (yy - 64) / 54
    r = np.sqrt(dx**2 + dy**2)
    image = np.where(r < 1.0, 200.0, 5.0)
    image = np.where(r < 0.88, 90.0, image)
    for side in (-1, 1):
        image[((xx - centre - side * 12) / 5) ** 2 + ((yy - 60) / 14) ** 2 < 1] = 30.0
    image += np.random.default_rng(seed).normal(0, 4, image.shape)
    mask = (xx - tumour_x) ** 2 + (yy - 70) ** 2 < tumour_r**2
    image[mask] = 240.0
    return np.clip(image, 0, 255).astype(np.uint8)[None], mask


def test_axis_found_on_an_off_centre_head_and_tumour_replaced() -> None:
    from tumorscope.transforms.pseudo_healthy import mirror_healthy, plan_mirror

    clean, _ = head_slice(centre=70.0, tumour_x=200.0)  # tumour outside the frame: none
    pixels, mask = head_slice(centre=70.0, tumour_x=95.0)
    plan = plan_mirror(pixels, mask)
    assert plan.eligible and abs(plan.axis - 70.0) < 1.5, plan
    out = mirror_healthy(pixels, mask, plan)
    assert out.dtype == pixels.dtype and out.shape == pixels.shape
    # the tumour is gone: its pixels now look like the healthy brain there
    assert abs(float(out[0][mask].mean()) - float(clean[0][mask].mean())) < 10
    assert float(pixels[0][mask].mean()) > 200
    # away from the tumour nothing changed
    far = np.zeros_like(mask)
    far[:, :60] = True
    assert np.array_equal(out[0][far], pixels[0][far])


@pytest.mark.parametrize("tumour_x", [70.0, 76.0])
def test_a_tumour_across_the_axis_is_refused(tumour_x: float) -> None:
    from tumorscope.transforms.pseudo_healthy import mirror_healthy, plan_mirror

    pixels, mask = head_slice(centre=70.0, tumour_x=tumour_x)
    plan = plan_mirror(pixels, mask)
    assert not plan.one_sided and not plan.eligible
    with pytest.raises(ValueError, match="does not qualify"):
        mirror_healthy(pixels, mask)


def test_an_asymmetric_slice_is_refused() -> None:
    """A sagittal-like slice (no left-right symmetry) does not qualify."""
    from tumorscope.transforms.pseudo_healthy import MIN_SYMMETRY, plan_mirror

    pixels, mask = head_slice(centre=64.0, tumour_x=90.0)
    pixels = pixels.copy()
    pixels[0, :, :64] = pixels[0, :, :64] // 4  # one half dark: nothing matches its mirror
    pixels[0, 20:50, 10:40] = 250
    plan = plan_mirror(pixels, mask)
    assert plan.symmetry < MIN_SYMMETRY and not plan.eligible


def test_no_mask_is_not_eligible() -> None:
    from tumorscope.transforms.pseudo_healthy import plan_mirror

    pixels, mask = head_slice(centre=64.0, tumour_x=90.0)
    assert not plan_mirror(pixels, np.zeros_like(mask)).eligible


def _figshare(root: Path) -> None:
    """A compact figshare folder: per patient one one-sided and one midline tumour."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for p in range(5):
        for k, tumour_x in enumerate((96.0, 66.0)):
            n = 2 * p + k + 1
            pixels, mask = head_slice(centre=66.0, tumour_x=tumour_x, seed=n)
            Image.fromarray(pixels[0]).save(root / "images" / f"{n}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"{n}.png")
            rows.append({"id": n, "pid": f"P{p}", "label": 1, "fold": p})
    with (root / "meta.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "pid", "label", "fold"])
        writer.writeheader()
        writer.writerows(rows)


def test_mix_mirror_adds_no_tumour_slices_in_their_patients_fold(tmp_path: Path) -> None:
    from tumorscope.data import load_index
    from tumorscope.data.mixed import NO_TUMOUR
    from tumorscope.data.prepare import keep_sources
    from tumorscope.data.slices import load_record, outline_indices

    _figshare(tmp_path / "figshare")
    index = load_index("mri-mix-mirror", tmp_path)
    plain = load_index("mri-mix", tmp_path)
    mirrored = [r for r in index.records if r.source == "figshare-mirror"]
    # the one-sided tumour of every patient, not the midline one
    assert len(mirrored) == 5 and len(index.records) == len(plain.records) + 5
    assert index.info["sources"] == ["figshare", "figshare-mirror"]
    by_id = {r.id: r for r in plain.records}
    for r in mirrored:
        source = by_id[r.id.replace("figshare-mirror/", "figshare/")]
        assert (r.label, r.patient, r.fold) == (NO_TUMOUR, source.patient, source.fold)
        assert r.outline == "figshare" and source.outline == "figshare"
        pixels, mask = load_record(r)
        original, tumour = load_record(source)
        assert not mask.any() and tumour.any()
        assert pixels[0][tumour].mean() < original[0][tumour].mean() - 50
    # the mirrored slices learn figshare's outline (an empty one)
    assert set(outline_indices(mirrored, ["lgg", "figshare"])) == {1}
    assert {r.source for r in keep_sources(index, ["figshare-mirror"]).records} == {
        "figshare-mirror"}
