"""2D slice preprocessing shared by training and inference, so a model sees the same input
either way: channels -> [0, 1] intensity -> framing (``framing.py``) -> resize ->
normalisation ("instance" or "global").

:class:`SlicePreprocessing` is the model card's ``preprocessing`` section for 2D slice models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tumorscope.errors import ConfigError, ScanReadError
from tumorscope.transforms.framing import HEAD_SQUARE, STRETCH, Frame, Framing, frame_of


def to_channels(array: np.ndarray, channels: int, path: Path | str | None = None) -> np.ndarray:
    """Fit a ``(C, H, W)`` array to ``channels``: RGB->gray by mean, gray->RGB by repetition."""
    have = array.shape[0]
    if have == channels:
        return array
    if channels == 1:
        return array.astype(np.float32).mean(axis=0, keepdims=True)
    if have == 1:
        return np.repeat(array, channels, axis=0)
    raise ScanReadError(path, f"image has {have} channels, the model expects {channels}")


def scale_intensity(array: np.ndarray) -> np.ndarray:
    """Min-max scale each image to [0, 1] so 8-bit, 16-bit and scanner units look alike."""
    array = array.astype(np.float32, copy=False)
    lo, hi = float(array.min()), float(array.max())
    if hi - lo < 1e-8:
        return np.zeros_like(array, dtype=np.float32)
    return (array - lo) / (hi - lo)


def resize_image(array: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(C, H, W)`` to ``(C, size, size)`` with area/linear interpolation."""
    if array.shape[1:] == (size, size):
        return array.astype(np.float32, copy=False)
    interp = cv2.INTER_AREA if array.shape[1] > size else cv2.INTER_LINEAR
    hwc = np.moveaxis(array.astype(np.float32, copy=False), 0, -1)
    out = cv2.resize(hwc, (size, size), interpolation=interp)
    return out[None] if out.ndim == 2 else np.moveaxis(out, -1, 0)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a binary mask with nearest-neighbour-free area averaging then threshold."""
    if mask.shape == (size, size):
        return mask.astype(np.uint8)
    out = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return (out >= 0.5).astype(np.uint8)


def normalise(array: np.ndarray, mode: str, stats: tuple[float, float] | None = None) -> np.ndarray:
    """Instance: z-score each image. Global: z-score with dataset (mean, std) from training."""
    if mode == "instance":
        mean = array.mean(axis=(1, 2), keepdims=True)
        std = array.std(axis=(1, 2), keepdims=True)
        return (array - mean) / (std + 1e-6)
    if mode == "global":
        if stats is None:
            raise ConfigError("normalization", "global normalisation needs the training set's "
                              "(mean, std), and none were given (preprocessing.stats)")
        return (array - stats[0]) / (stats[1] + 1e-6)
    raise ConfigError("normalization", f"unknown normalisation {mode!r} (instance, global)")


def load_model_input(array: np.ndarray, channels: int, size: int,
                     path: Path | str | None = None, framing: str = HEAD_SQUARE) -> np.ndarray:
    """Raw ``(C, H, W)`` pixels -> ``(channels, size, size)`` float32 in [0, 1] (not yet
    normalised: augmentation happens between this step and :func:`normalise`)."""
    return framed_input(array, channels, size, path, framing)[0]


def framed_input(array: np.ndarray, channels: int, size: int, path: Path | str | None = None,
                 framing: str = HEAD_SQUARE) -> tuple[np.ndarray, Frame]:
    """:func:`load_model_input` and the window it took of the image."""
    image = scale_intensity(to_channels(array, channels, path))
    frame = frame_of(image, framing)
    return resize_image(frame.crop(image), size), frame


def model_pair(pixels: np.ndarray, mask: np.ndarray, channels: int, size: int,
               path: Path | str | None = None, framing: str = HEAD_SQUARE
               ) -> tuple[np.ndarray, np.ndarray]:
    """A slice and its mask as a model trains on them: ``(channels, size, size)`` float32
    in [0, 1] and ``(size, size)`` uint8, framed alike."""
    image, frame = framed_input(pixels, channels, size, path, framing)
    return image, resize_mask(frame.crop(mask), size)


INTENSITY = "per-image min-max to [0, 1]"


class SlicePreprocessing(BaseModel):
    """How a 2D slice model's input is made (stored in its model card)."""

    model_config = ConfigDict(extra="allow")

    input_size: int = Field(ge=1)
    in_channels: int = Field(ge=1)
    intensity: str = INTENSITY
    normalization: str = "instance"
    stats: tuple[float, float] | None = None
    # cards written before framing existed squashed every image into the square
    framing: Framing = STRETCH

    @classmethod
    def from_card(cls, section: dict[str, Any]) -> SlicePreprocessing:
        """The card's ``preprocessing`` section, or a one-line error naming the bad key."""
        from pydantic import ValidationError

        from tumorscope.errors import CheckpointError

        try:
            return cls.model_validate(section)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise CheckpointError("model card", f"preprocessing.{where}: {first['msg']}") from None

    def __call__(self, array: np.ndarray, path: Path | str | None = None) -> np.ndarray:
        """Raw ``(C, H, W)`` pixels -> normalised ``(in_channels, S, S)`` float32 input."""
        return self.framed(array, path)[0]

    def framed(self, array: np.ndarray, path: Path | str | None = None
               ) -> tuple[np.ndarray, Frame]:
        """The normalised input and the window it took of the image (to paste a mask
        back with :meth:`Frame.paste`)."""
        image, frame = framed_input(array, self.in_channels, self.input_size, path,
                                    self.framing)
        return normalise(image, self.normalization, self.stats).astype(np.float32), frame


def card_preprocessing(cfg: Any, stats: tuple[float, float] | None) -> dict[str, Any]:
    """The card section for a 2D slice model configured by ``cfg.model``."""
    m = cfg.model
    return SlicePreprocessing(input_size=m.input_size, in_channels=m.in_channels,
                              normalization=m.normalization, stats=stats,
                              framing=m.framing).model_dump(mode="json")
