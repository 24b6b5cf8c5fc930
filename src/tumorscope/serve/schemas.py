"""API response schemas (shown in the OpenAPI docs at /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class BoundingBox(BaseModel):
    row_min: int
    row_max: int
    col_min: int
    col_max: int


class MaskRLE(BaseModel):
    size: list[int] = Field(description="[rows, cols]")
    counts: list[int] = Field(description="row-major run lengths, starting with background")
    order: str = "C"


class PredictResponse(BaseModel):
    """One prediction: class, probabilities, mask and measurements."""

    filename: str
    predicted_class: str = Field(description='a tumour type, or "no tumour" for models that '
                                 "have that outcome")
    message: str = Field(description="the finding in one sentence, with the warning when the "
                         "image is unlike the training data")
    tumour_found: bool
    tumour_probability: float | None = Field(None, description='1 - p("no tumour"), for '
                                             'models with a "no tumour" class')
    in_distribution: bool = Field(description="false when the image is unlike the training "
                                  "data: the result is then unreliable")
    typicality: float | None = Field(None, description="share of validation images whose "
                                     "features are at least as far from the training data "
                                     "(1 typical, 0 unlike any); calibrated models only")
    ood_reasons: list[str] = Field(default_factory=list)
    probabilities: dict[str, float]
    segmentation: bool = Field(True, description="false for a classifier (no mask head): the "
                               "mask fields are then null")
    outline: str | None = Field(None, description="for a model with one mask per outline "
                                "definition, the one the mask follows (the dataset whose "
                                "annotations it learned, e.g. figshare: the tumour on T1-CE)")
    mask_png_base64: str | None = Field(description="binary mask, 0/255 PNG at the scan's size")
    mask_rle: MaskRLE | None
    image_png_base64: str = Field(description="the (slice of the) scan as an 8-bit PNG, "
                                  "for display")
    tumour_area_pixels: int | None
    tumour_area_mm2: float | None
    bounding_box: BoundingBox | None
    shape: list[int] = Field(description="the mask's [rows, cols]: the slice's size, or the "
                             "shrunk size for slices larger than the server's --max-side")
    original_shape: list[int] = Field(description="[rows, cols] of the slice as decoded")
    spacing_mm: list[float] | None
    slice_index: int | None = None
    model_id: str
    model_version: str
    timing_ms: dict[str, float]
    upload_id: str | None = Field(None, description="where the server kept the upload, when "
                                  "started with --save-uploads")
    disclaimer: str = "Research tool, not a medical device: not for diagnosis."


class ModelInfo(BaseModel):
    model_id: str
    card: dict[str, Any]


class ErrorResponse(BaseModel):
    detail: str
