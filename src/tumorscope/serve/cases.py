"""``POST /api/v1/predict-case``: a BraTS case (four NIfTI files as fields t1, t1ce, t2,
flair, or one zip/tar archive of a case folder) -> WT/TC/ET volumes, the segmentation as a
NIfTI in the input's space and label convention, and a compact volume for the page's viewer
(FLAIR and labels cropped to the brain, every second voxel)."""

from __future__ import annotations

import base64
import gzip
import time
from dataclasses import dataclass, field
from typing import Any, cast

from fastapi import FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from tumorscope import __version__
from tumorscope.errors import TumorscopeError
from tumorscope.inference.brats import BratsInferer
from tumorscope.inference.predictor import Predictor
from tumorscope.io.archive import case_files_from_archive
from tumorscope.io.brats import MODALITIES, read_case_bytes, segmentation_image
from tumorscope.io.scan import DecodeBudget
from tumorscope.reporting.regions import display_grid
from tumorscope.serve.settings import ServeSettings
from tumorscope.serve.uploads import MULTIPART_OVERHEAD, parse_form, status_for

DISPLAY_STEP = 2


@dataclass
class CaseUpload:
    """The uploaded files of one case (emptied once answered, see uploads.Upload)."""

    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    archive: tuple[str, bytes] | None = None

    def size(self) -> int:
        return sum(len(d) for _, d in self.files.values()) + len(self.archive[1] if
                                                                  self.archive else b"")


async def _read_case_upload(request: Request, limit: int) -> CaseUpload:
    form = await parse_form(request, limit, 5, "the case's files (t1, t1ce, t2, flair) or "
                            "an 'archive'")
    upload = CaseUpload()
    try:
        for key in (*MODALITIES, "archive"):
            part = form.get(key)
            if isinstance(part, UploadFile):
                item = (part.filename or key, await part.read())
                if key == "archive":
                    upload.archive = item
                else:
                    upload.files[key] = item
    finally:
        await form.close()
    if not upload.files and upload.archive is None:
        raise HTTPException(422, "send the case as fields t1, t1ce, t2 and flair (NIfTI "
                            "files) or as one 'archive' (zip or tar of the case folder)")
    return upload


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _answer(predictor: Predictor, upload: CaseUpload, settings: ServeSettings,
            budget: DecodeBudget) -> dict[str, Any]:
    t0 = time.perf_counter()
    section = predictor.card.preprocessing
    with budget.held():
        files = upload.files or case_files_from_archive(
            *cast(tuple[str, bytes], upload.archive), settings.max_upload_bytes * 8)
        files.pop("seg", None)  # a reference segmentation in an archive is not needed
        case = read_case_bytes(files, missing=str(section.get("missing_modality", "error")),
                               label_map=section.get("label_map"),
                               max_elements=settings.max_elements)
        t1 = time.perf_counter()
        pred = cast(BratsInferer, predictor.inferer).predict_case(case)
    t2 = time.perf_counter()
    nifti = gzip.compress(segmentation_image(pred.labels, case).to_bytes(), compresslevel=6)
    image, labels, origin = display_grid(case.image[MODALITIES.index("flair")], pred.labels,
                                         DISPLAY_STEP)
    return {
        "case_id": case.case_id, "naming": case.naming.name, "filled": list(case.filled),
        "volumes_cm3": pred.volumes_cm3, "shape": list(case.shape),
        "spacing_mm": list(case.spacing),
        "segmentation_filename": f"{case.case_id}_seg.nii.gz",
        "segmentation_nifti_base64": _b64(nifti),
        "display": {"modality": "flair", "shape": list(image.shape), "step": DISPLAY_STEP,
                    "origin": list(origin), "image_base64": _b64(image.tobytes(order="C")),
                    "labels_base64": _b64(labels.tobytes(order="C")), "order": "C",
                    "axes": "x, y, z (NIfTI voxel axes; z is axial)"},
        "label_names": {"1": "NCR (necrotic / non-enhancing core)", "2": "ED (oedema)",
                        "3": "ET (enhancing tumour)"},
        "model_id": predictor.model_id, "model_version": f"tumorscope {__version__}",
        "timing_ms": {"decode": 1000 * (t1 - t0), "inference": 1000 * (t2 - t1),
                      "total": 1000 * (time.perf_counter() - t0)},
        "disclaimer": "Research tool, not a medical device: not for diagnosis."}


def _predict(predictor: Predictor, upload: CaseUpload, settings: ServeSettings,
             budget: DecodeBudget) -> dict[str, Any] | tuple[int, str]:
    """In a worker thread; a user error comes back as ``(status, message)``."""
    try:
        return _answer(predictor, upload, settings, budget)
    except TumorscopeError as err:
        return status_for(err), str(err)


def add_case_routes(app: FastAPI, settings: ServeSettings) -> None:
    """``POST /api/v1/predict-case`` (503 when the server has no BraTS model)."""

    @app.post("/api/v1/predict-case", openapi_extra={"requestBody": {"required": True,
              "content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
                  **{m: {"type": "string", "format": "binary", "description": f"{m} NIfTI"}
                     for m in MODALITIES},
                  "archive": {"type": "string", "format": "binary", "description":
                              "zip or tar(.gz) of a case folder (instead of the four files)"}}}}
                          }}})
    async def predict_case(request: Request) -> dict[str, Any]:
        predictor: Predictor | None = app.state.case_predictor
        if predictor is None:
            raise HTTPException(503, "this server has no BraTS model; start it with "
                                "--case-checkpoint MODEL_DIR")
        async with app.state.uploads:
            upload = await _read_case_upload(request, settings.max_upload_bytes +
                                             MULTIPART_OVERHEAD)
            try:
                if upload.size() > settings.max_upload_bytes:
                    raise HTTPException(413, f"upload exceeds the limit of "
                                        f"{settings.max_upload_bytes:,} bytes")
                async with app.state.gate:
                    response = await run_in_threadpool(_predict, predictor, upload, settings,
                                                       app.state.budget)
                if isinstance(response, tuple):
                    raise HTTPException(*response)
                return response
            finally:
                upload.files, upload.archive = {}, None
