"""Framing: a slice of any shape becomes the model's square without distorting the head,
and the model's mask goes back where it belongs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tumorscope.transforms.framing import HEAD_SHARE, HEAD_SQUARE, STRETCH, Frame, frame_of

REPO = Path(__file__).resolve().parents[1]


def head(h: int, w: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """A [0, 1] image: an elliptical 'head' filling ``rows`` x ``cols`` of a dark frame."""
    yy, xx = np.mgrid[:h, :w]
    cy, cx = (rows[0] + rows[1]) / 2, (cols[0] + cols[1]) / 2
    ry, rx = (rows[1] - rows[0]) / 2, (cols[1] - cols[0]) / 2
    return (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.float32) * 0.8


def test_a_square_image_is_used_as_it_is() -> None:
    image = head(64, 64, (10, 54), (12, 52))
    frame = frame_of(image, HEAD_SQUARE)
    assert frame == Frame(64, 64, 0, 0, 64, 64)
    assert np.array_equal(frame.crop(image), image)


def test_a_head_on_a_wide_canvas_gets_its_own_square_back() -> None:
    square = head(60, 60, (4, 56), (8, 52))
    canvas = np.pad(square, ((0, 0), (30, 17)))  # off-centre on a 60 x 107 canvas
    frame = frame_of(canvas, HEAD_SQUARE)
    assert (frame.rows, frame.cols, frame.top) == (60, 60, 0)
    assert abs(frame.left - 30) <= 1  # centred on the head, not on the canvas
    assert np.abs(frame.crop(canvas) - np.roll(square, 30 - frame.left, axis=1)).max() == 0


def test_a_slice_cropped_tight_to_the_head_gets_a_margin_back() -> None:
    tight = np.full((80, 50), 0.8, np.float32)  # the head fills the frame
    frame = frame_of(tight, HEAD_SQUARE)
    side = math.ceil(80 / HEAD_SHARE)
    assert (frame.rows, frame.cols) == (side, side)
    assert frame.top == -((side - 80) // 2) and frame.left == -((side - 50) // 2)
    window = frame.crop(tight)
    assert window.shape == (side, side) and np.isclose(window.sum(), tight.sum())
    assert window[0].max() == 0 and window[:, 0].max() == 0  # dark around the head


def test_stretch_and_unknown_framings() -> None:
    image = head(40, 70, (2, 38), (10, 60))
    assert frame_of(image, STRETCH) == Frame(40, 70, 0, 0, 40, 70)
    with pytest.raises(ValueError, match="unknown framing"):
        frame_of(image, "letterbox")
    blank = np.zeros((30, 50), np.float32)  # nothing stands out: the middle, padded
    assert frame_of(blank, HEAD_SQUARE) == Frame(30, 50, -10, 0, 50, 50)


def test_a_mask_goes_back_where_it_came_from() -> None:
    import cv2

    image = head(90, 140, (5, 85), (30, 110))
    mask = np.zeros((90, 140), np.float32)
    mask[40:60, 50:75] = 1
    frame = frame_of(image, HEAD_SQUARE)
    small = cv2.resize(frame.crop(mask), (64, 64), interpolation=cv2.INTER_AREA)
    back = frame.paste(small) >= 0.5
    assert back.shape == (90, 140)
    dice = 2 * (back & (mask > 0)).sum() / (back.sum() + mask.sum())
    assert dice > 0.9
    assert not back[:, :30].any() and not back[:, 110:].any()


def test_cards_say_how_they_frame() -> None:
    from tumorscope.transforms.slice2d import SlicePreprocessing

    old = SlicePreprocessing.from_card({"input_size": 8, "in_channels": 1})
    assert old.framing == STRETCH  # cards written before framing squashed
    for name in ("default", "figshare", "lgg", "capsule"):
        section = json.loads((REPO / "models" / name / "model.json").read_text())[
            "preprocessing"]
        assert SlicePreprocessing.from_card(section).framing == HEAD_SQUARE, name


def test_around_the_head_makes_a_zoomed_out_head_and_a_full_one_alike() -> None:
    from tumorscope.transforms.framing import HEAD_CROP

    full = head(100, 100, (5, 95), (10, 90))
    zoomed = np.pad(head(50, 50, (2, 48), (5, 45)), 25)  # the same head at half the size
    import cv2

    frames = [frame_of(image, HEAD_CROP) for image in (full, zoomed)]
    assert all(f.rows == f.cols for f in frames)  # squares
    assert abs(frames[0].rows / frames[1].rows - 2) < 0.1  # each the head's size / 0.85
    assert abs(frames[0].rows * HEAD_SHARE - 90) < 4
    windows = [cv2.resize(f.crop(image), (64, 64), interpolation=cv2.INTER_AREA)
               for f, image in zip(frames, (full, zoomed), strict=True)]
    assert np.abs(windows[0] - windows[1]).mean() < 0.05  # alike once framed
    blank = np.zeros((30, 50), np.float32)  # nothing stands out: padded to a square
    assert frame_of(blank, HEAD_CROP) == Frame(30, 50, -10, 0, 50, 50)


def test_a_model_trained_around_the_head_says_so(tmp_path: Path) -> None:
    from tumorscope.config import load_config
    from tumorscope.transforms.framing import HEAD_CROP
    from tumorscope.transforms.slice2d import SlicePreprocessing, card_preprocessing

    config = REPO / "configs" / "mix" / "joint-lite0-gpu.yaml"
    cfg = load_config(config, ["model.framing=around the head"])
    section = card_preprocessing(cfg, None)
    assert SlicePreprocessing.from_card(section).framing == HEAD_CROP
    assert card_preprocessing(load_config(config, []), None)["framing"] == HEAD_SQUARE
