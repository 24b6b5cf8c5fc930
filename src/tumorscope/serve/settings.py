"""What a ``tumorscope serve`` process is configured with (limits, models, exposure)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tumorscope.io.scan import DEFAULT_MAX_ELEMENTS

CASE_ELEMENTS = 5 * 240 * 240 * 155
"""A BraTS case decoded at once: four modalities and a segmentation at 240x240x155."""


@dataclass(frozen=True)
class ServeSettings:
    """Server limits and the models to load."""

    checkpoint: Path
    case_checkpoint: Path | None = None  # a BraTS model for /api/v1/predict-case
    max_upload_bytes: int = 50 * 1024 * 1024
    max_elements: int = DEFAULT_MAX_ELEMENTS
    decode_budget: int = max(2 * DEFAULT_MAX_ELEMENTS, CASE_ELEMENTS)  # all requests at once
    max_side: int = 1024  # larger slices are shrunk to this right after decoding
    max_concurrency: int = 4
    max_uploads: int = 8  # upload bodies held in memory at once; more wait (TCP backpressure)
    backend: str = "auto"
    save_uploads: Path | None = None  # keep accepted uploads here (opt-in, e.g. for audit)
    api_key: str | None = None  # required in X-API-Key for /api/v1 when set
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1", "[::1]")
    cors_origins: tuple[str, ...] = ()  # CORS off unless origins are given
