"""What a model says about one scan: class, probabilities, mask and measurements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Prediction:
    """The model's answer for one slice (or a volume, slice by slice)."""

    label: str
    probabilities: dict[str, float]
    mask: np.ndarray  # bool, the input's spatial shape
    spacing: tuple[float, ...] | None = None
    model_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def area_pixels(self) -> int:
        return int(self.mask.sum())

    @property
    def area_mm2(self) -> float | None:
        """Area (2D) or volume in mm³ (3D) when the pixel spacing is known."""
        if not self.spacing:
            return None
        return float(self.mask.sum() * float(np.prod(self.spacing[: self.mask.ndim])))

    def bounding_box(self) -> dict[str, int] | None:
        """Tight box around the mask (row/col, inclusive), or None when nothing was found."""
        if not self.mask.any():
            return None
        mask2d = np.asarray(self.mask if self.mask.ndim == 2 else self.mask.any(axis=-1))
        rows, cols = np.flatnonzero(mask2d.any(1)), np.flatnonzero(mask2d.any(0))
        return {"row_min": int(rows[0]), "row_max": int(rows[-1]),
                "col_min": int(cols[0]), "col_max": int(cols[-1])}

    @property
    def tumour_found(self) -> bool:
        """The model's decision (a "no tumour" outcome clears the mask)."""
        return bool(self.extra.get("tumour_found", self.mask.any()))

    @property
    def in_distribution(self) -> bool:
        """False when the input looks unlike the training data."""
        return bool(self.extra.get("in_distribution", True))

    def message(self) -> str:
        """One plain sentence for people: the finding, and a warning when the image is
        unlike what the model was trained on."""
        p = self.probabilities.get(self.label)
        odds = f" (p={p:.2f})" if p is not None else ""
        if self.extra.get("assumes_tumour"):
            said = (f"Tumour type: {self.label}{odds}; this model assumes a tumour is present "
                    "and cannot say there is none.")
        elif self.tumour_found:
            said = f"Tumour found: {self.label}{odds}."
        elif self.label == "no tumour":
            said = "No tumour found."
        else:  # a model without a "no tumour" outcome, and an empty outline
            said = f"No tumour outlined (most likely type if there is one: {self.label}{odds})."
        if not self.in_distribution:
            why = "; ".join(self.extra.get("ood_reasons", [])) or "unusual input"
            said += (f" This image is unlike the training data ({why}); the result is "
                     "unreliable.")
        return said

    def record(self) -> dict[str, Any]:
        """JSON-ready summary."""
        volume = self.mask.ndim == 3
        outline = {"tumour_area_pixels" if not volume else "tumour_voxels": self.area_pixels,
                   "tumour_area_mm2" if not volume else "tumour_volume_mm3": self.area_mm2,
                   "bounding_box": self.bounding_box(), "mask_shape": list(self.mask.shape)}
        return {"class": self.label, "message": self.message(),
                "probabilities": self.probabilities,
                **(outline if self.extra.get("segmentation", True) else {}),
                "spacing_mm": list(self.spacing) if self.spacing else None,
                "model_id": self.model_id, **self.extra}
