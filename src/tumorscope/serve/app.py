"""FastAPI app: JSON API under /api/v1, health probes, and the upload page at /.

Uploads are read into memory (written to disk only with ``save_uploads``, under a fresh id),
size-limited while streaming, and decoded with a pixel limit. Memory stays bounded under
concurrent worst-case uploads: decodes draw on one element budget shared by all requests
(reserved from the header, before the pixels are allocated), a large slice is shrunk to
``max_side`` right after decoding, and a refused body is dropped at once. The Predictor is
loaded once at start-up and shared; predictions run in worker threads, at most
``max_concurrency`` at a time.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from tumorscope import __version__
from tumorscope.errors import ScanReadError, TumorscopeError
from tumorscope.inference.prediction import Prediction
from tumorscope.inference.predictor import Predictor
from tumorscope.io import read_scan_bytes
from tumorscope.io.scan import DecodeBudget, Scan, shrink
from tumorscope.io.writers import write_atomic
from tumorscope.reporting.overlay import display_rgb
from tumorscope.serve.cases import add_case_routes
from tumorscope.serve.encoding import png_base64, rle_encode
from tumorscope.serve.schemas import ErrorResponse, ModelInfo, PredictResponse
from tumorscope.serve.settings import ServeSettings
from tumorscope.serve.uploads import (
    MULTIPART_OVERHEAD,
    Upload,
    parse_form,
    return_freed_memory,
    status_for,
)

log = logging.getLogger("tumorscope.serve")
STATIC = Path(__file__).parent / "static"


async def _parse_upload(request: Request, limit: int) -> Upload:
    """Parse the multipart body while it streams in (no second copy of the whole body): the
    file field and an optional slice index."""
    form = await parse_form(request, limit, 1, "the scan with a 'file' field")
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(422, "multipart field 'file' with the scan is missing")
        data = await upload.read()
        raw_slice = form.get("slice")
    finally:
        await form.close()
    slice_index = None
    if isinstance(raw_slice, str) and raw_slice.strip():
        if not re.fullmatch(r"-?[0-9]{1,9}", raw_slice.strip()):  # ASCII digits only
            raise HTTPException(422, f"slice must be an integer, got {raw_slice!r}")
        slice_index = int(raw_slice)
    return Upload(upload.filename or "upload", data, slice_index)



def _decode(upload: Upload, settings: ServeSettings, budget: DecodeBudget
            ) -> tuple[Scan, int | None]:
    """The slice to predict, at most ``max_side`` pixels on a side; the decoded file's
    elements are held in the shared budget until only that slice is left."""
    name, slice_index = upload.name, upload.slice_index
    with budget.held():
        scan = read_scan_bytes(upload.data, name, settings.max_elements)
        if scan.is_volume:
            depth = scan.array.shape[-1]
            slice_index = depth // 2 if slice_index is None else slice_index
            if not 0 <= slice_index < depth:
                raise ScanReadError(name, f"slice {slice_index} is outside 0..{depth - 1}")
            scan = scan.slice(slice_index)
            scan.array = scan.array.copy()  # a view would keep the whole volume alive
        else:
            slice_index = None
        return shrink(scan, settings.max_side), slice_index


def _predict(predictor: Predictor, upload: Upload, settings: ServeSettings,
             budget: DecodeBudget) -> dict[str, Any] | tuple[int, str]:
    """Decode and predict one upload (runs in a worker thread); a user error comes back as
    ``(status, message)``: raised across threads, its traceback would keep the upload and
    its decoded arrays alive in a reference cycle."""
    try:
        return _answer(predictor, upload, settings, budget)
    except TumorscopeError as err:
        return status_for(err), str(err)


def _answer(predictor: Predictor, upload: Upload, settings: ServeSettings,
            budget: DecodeBudget) -> dict[str, Any]:
    t0 = time.perf_counter()
    scan, slice_index = _decode(upload, settings, budget)
    t1 = time.perf_counter()
    pred = predictor.predict_scan(scan)
    t2 = time.perf_counter()
    mask = pred.mask
    segments = bool(pred.extra.get("segmentation", True))
    response = {
        "filename": Path(upload.name).name, "predicted_class": pred.label,
        "message": pred.message(), "tumour_found": pred.tumour_found,
        "tumour_probability": pred.extra.get("tumour_probability"),
        "in_distribution": pred.in_distribution, "typicality": pred.extra.get("typicality"),
        "ood_reasons": pred.extra.get("ood_reasons", []),
        "probabilities": pred.probabilities, "segmentation": segments,
        "outline": pred.extra.get("outline"),
        "image_png_base64": png_base64(_display(scan.array)), "shape": list(mask.shape),
        **(_outline(pred) if segments else dict.fromkeys(OUTLINE_FIELDS)),
        "spacing_mm": list(scan.spacing) if scan.spacing else None,
        "slice_index": slice_index, "model_id": predictor.model_id,
        "original_shape": list(scan.meta.get("original_shape", mask.shape)),
        "model_version": f"tumorscope {__version__}",
    }
    response["timing_ms"] = {"decode": 1000 * (t1 - t0), "inference": 1000 * (t2 - t1),
                             "total": 1000 * (time.perf_counter() - t0)}
    return response


OUTLINE_FIELDS = ("mask_png_base64", "mask_rle", "tumour_area_pixels", "tumour_area_mm2",
                  "bounding_box")


def _outline(pred: Prediction) -> dict[str, Any]:
    """The mask fields of a response (a segmenting model's)."""
    return {"mask_png_base64": png_base64(pred.mask.astype(np.uint8) * 255),
            "mask_rle": rle_encode(pred.mask), "tumour_area_pixels": pred.area_pixels,
            "tumour_area_mm2": pred.area_mm2, "bounding_box": pred.bounding_box()}


def _display(array: np.ndarray) -> np.ndarray:
    """8-bit picture of the scan: gray for one channel (a third of the RGB bytes)."""
    rgb = display_rgb(array)
    return rgb[..., 0] if array.shape[0] < 3 else rgb


SAVED_SUFFIXES = (".nii.gz", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".mat", ".nii")


def save_upload(folder: Path, upload: Upload) -> str:
    """Write an upload under a fresh id (the client's file name never becomes a path)."""
    suffix = next((s for s in SAVED_SUFFIXES if upload.name.lower().endswith(s)), ".bin")
    upload_id = uuid.uuid4().hex
    write_atomic(folder / f"{upload_id}{suffix}", lambda p: p.write_bytes(upload.data))
    return upload_id


API_KEY_HEADER = "X-API-Key"


def _protect(app: FastAPI, settings: ServeSettings) -> None:
    """Trusted Host headers (no DNS rebinding), CORS only for the given origins, and the API
    key on /api/v1 when one is set (compared in constant time)."""
    import hmac

    from starlette.middleware.cors import CORSMiddleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=[API_KEY_HEADER])
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
    if settings.api_key is None:
        return
    expected = settings.api_key.encode()

    @app.middleware("http")
    async def require_key(request: Request, call_next: Any) -> Any:
        if request.url.path.startswith("/api/") and request.method != "OPTIONS":
            given = request.headers.get(API_KEY_HEADER, "").encode()
            if not hmac.compare_digest(given, expected):
                return JSONResponse({"detail": f"missing or wrong {API_KEY_HEADER} header"},
                                    status_code=401)
        return await call_next(request)


def create_app(settings: ServeSettings) -> FastAPI:
    """Build the app; the model loads once when the server starts."""
    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        predictor = await run_in_threadpool(
            Predictor.from_checkpoint, settings.checkpoint, backend=settings.backend)
        await run_in_threadpool(predictor.self_check)  # /ready only for a model that predicts
        app.state.predictor = predictor
        if settings.case_checkpoint is not None:
            cases = await run_in_threadpool(Predictor.from_checkpoint, settings.case_checkpoint,
                                            backend=settings.backend)
            await run_in_threadpool(cases.self_check)
            app.state.case_predictor = cases
        app.state.gate = asyncio.Semaphore(settings.max_concurrency)
        app.state.uploads = asyncio.Semaphore(settings.max_uploads)
        app.state.budget = DecodeBudget(max(settings.decode_budget, settings.max_elements))
        return_freed_memory()
        log.info("model %s loaded (%s)", app.state.predictor.model_id,
                 app.state.predictor.backend)
        yield

    # FastAPIOffline serves the /docs and /redoc scripts itself: the pages work without internet
    app = FastAPIOffline(title="tumorscope", version=__version__, lifespan=lifespan,
                         description="Brain-tumour MRI: tumour type and outline from one "
                         "slice. Research tool, not a medical device.")
    app.state.predictor = app.state.case_predictor = None
    _protect(app, settings)
    errors: dict[int | str, dict[str, Any]] = {413: {"model": ErrorResponse},
                                               415: {"model": ErrorResponse},
                                               422: {"model": ErrorResponse}}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> JSONResponse:
        ok = app.state.predictor is not None
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/api/v1/models", response_model=list[ModelInfo])
    def models() -> list[dict[str, Any]]:
        loaded = [app.state.predictor, app.state.case_predictor]
        return [{"model_id": p.model_id, "card": p.card.summary()} for p in loaded if p]

    @app.post("/api/v1/predict", response_model=PredictResponse, responses=errors,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "multipart/form-data": {"schema": {
                      "type": "object", "required": ["file"], "properties": {
                          "file": {"type": "string", "format": "binary",
                                   "description": "PNG, JPEG, TIFF, DICOM, figshare .mat, "
                                   "NIfTI (.nii/.nii.gz)"},
                          "slice": {"type": "integer", "description": "axial slice of a 3D "
                                    "NIfTI volume (default: the middle one)"}}}}}}})
    async def predict(request: Request) -> dict[str, Any]:
        async with app.state.uploads:  # bodies held in memory at once, all requests
            upload = await _parse_upload(request,
                                         settings.max_upload_bytes + MULTIPART_OVERHEAD)
            try:
                if len(upload.data) > settings.max_upload_bytes:
                    raise HTTPException(413, f"upload exceeds the limit of "
                                        f"{settings.max_upload_bytes:,} bytes")
                async with app.state.gate:
                    response = await run_in_threadpool(_predict, app.state.predictor, upload,
                                                       settings, app.state.budget)
                if isinstance(response, tuple):
                    raise HTTPException(*response)
                if settings.save_uploads is not None:
                    response["upload_id"] = await run_in_threadpool(
                        save_upload, settings.save_uploads, upload)
                return response
            finally:
                upload.data = b""  # freed now, whatever still refers to the holder

    add_case_routes(app, settings)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
