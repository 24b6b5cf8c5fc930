"""App factory for uvicorn workers: settings travel in ``TUMORSCOPE_SERVE_SETTINGS`` (JSON)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi import FastAPI

from tumorscope.logs import configure as configure_logging
from tumorscope.serve.app import ServeSettings, create_app


def app_from_env() -> FastAPI:
    """Build the app from the settings ``tumorscope serve`` put in the environment."""
    configure_logging()  # each worker process: library noise stays out of the log
    raw = json.loads(os.environ["TUMORSCOPE_SERVE_SETTINGS"])
    raw["checkpoint"] = Path(raw["checkpoint"])
    if raw.get("case_checkpoint"):
        raw["case_checkpoint"] = Path(raw["case_checkpoint"])
    if raw.get("save_uploads"):
        raw["save_uploads"] = Path(raw["save_uploads"])
    for key in ("allowed_hosts", "cors_origins"):
        if key in raw:
            raw[key] = tuple(raw[key])
    return create_app(ServeSettings(**raw))
