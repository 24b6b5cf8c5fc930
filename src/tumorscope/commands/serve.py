"""``tumorscope serve``: the web page and JSON API (FastAPI under uvicorn) with a model."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tumorscope.locations import default_checkpoint


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` sub-command."""
    p = sub.add_parser("serve", help="web page + JSON API (FastAPI) with a loaded model")
    p.add_argument("--checkpoint", type=Path, help="model dir (default: shipped)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="server processes (each loads the "
                   "model once)")
    p.add_argument("--max-upload-mb", type=float, default=50.0)
    p.add_argument("--max-pixels", type=int, default=64 * 1024 * 1024,
                   help="largest decoded image (elements); larger uploads are refused")
    p.add_argument("--concurrency", type=int, default=4, help="predictions at a time")
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto")
    p.add_argument("--save-uploads", type=Path, metavar="DIR", help="keep every accepted upload "
                   "in DIR under a fresh id returned as upload_id (off: uploads stay in memory)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check the model, pass the settings to the workers (environment) and serve."""
    import json

    import uvicorn

    from tumorscope.checkpoint.store import read_card

    ckpt = (args.checkpoint or default_checkpoint()).resolve()
    read_card(ckpt)  # fail here, with a clear message, rather than in a worker
    settings = {"checkpoint": str(ckpt), "max_upload_bytes": int(args.max_upload_mb * 2**20),
                "max_elements": args.max_pixels, "max_concurrency": args.concurrency,
                "backend": args.backend,
                "save_uploads": str(args.save_uploads.resolve()) if args.save_uploads else None}
    if args.save_uploads:
        args.save_uploads.mkdir(parents=True, exist_ok=True)
    os.environ["TUMORSCOPE_SERVE_SETTINGS"] = json.dumps(settings)
    print(f"serving {ckpt} on http://{args.host}:{args.port}  (API docs: /docs)", flush=True)
    uvicorn.run("tumorscope.serve.factory:app_from_env", factory=True, host=args.host,
                port=args.port, workers=args.workers, log_level="info")
    return 0
