"""``tumorscope serve``: the web page and JSON API (FastAPI under uvicorn) with a model."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tumorscope.errors import TumorscopeError
from tumorscope.io.scan import DEFAULT_MAX_ELEMENTS
from tumorscope.locations import default_checkpoint, shipped_case_model
from tumorscope.serve.settings import CASE_ELEMENTS


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` sub-command."""
    p = sub.add_parser("serve", help="web page + JSON API (FastAPI) with a loaded model")
    p.add_argument("--checkpoint", type=Path, help="model dir (default: shipped)")
    p.add_argument("--case-checkpoint", type=Path, help="a BraTS model for whole cases at "
                   "/api/v1/predict-case (default: models/brats when shipped)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="server processes (each loads the "
                   "model once)")
    p.add_argument("--max-upload-mb", type=float, default=50.0)
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_ELEMENTS,
                   help="largest decoded image in elements (channels x pixels or voxels; "
                   f"default {DEFAULT_MAX_ELEMENTS:,} = 4096x4096 gray); larger uploads are "
                   "refused")
    p.add_argument("--decode-budget", type=int, metavar="ELEMENTS", help="elements decoded at "
                   "once by all requests together (default: twice --max-pixels, at least a "
                   "BraTS case); more waits")
    p.add_argument("--max-side", type=int, default=1024, help="slices larger than this are "
                   "shrunk to it right after decoding (the mask comes back at that size)")
    p.add_argument("--concurrency", type=int, default=4, help="predictions at a time")
    p.add_argument("--max-uploads", type=int, default=8, help="upload bodies held in memory "
                   "at once; further clients wait (memory stays bounded)")
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto")
    p.add_argument("--save-uploads", type=Path, metavar="DIR", help="keep every accepted upload "
                   "in DIR under a fresh id returned as upload_id (off: uploads stay in memory)")
    p.add_argument("--api-key-file", type=Path, metavar="FILE", help="require this key (the "
                   "file's first line) in the X-API-Key header of /api/v1 requests; "
                   f"${API_KEY_VARIABLE} also sets it")
    p.add_argument("--allowed-hosts", nargs="+", metavar="HOST", help="Host header values "
                   "accepted (default: localhost, 127.0.0.1, ::1 and --host); others get 400, "
                   "which stops DNS rebinding")
    p.add_argument("--cors-origins", nargs="+", metavar="ORIGIN", default=[],
                   help="browser origins allowed to call the API from other sites (default: "
                   "none, CORS off)")
    p.set_defaults(handler=run)


API_KEY_VARIABLE = "TUMORSCOPE_API_KEY"


def api_key(path: Path | None) -> str | None:
    """The API key from ``--api-key-file`` or the environment (None: no authentication)."""
    if path is not None:
        try:
            key = path.read_text(encoding="utf-8").strip().splitlines()[0].strip()
        except (OSError, UnicodeDecodeError, IndexError) as err:
            raise TumorscopeError(path, f"cannot read an API key from it ({err})") from None
    else:
        key = os.environ.get(API_KEY_VARIABLE, "").strip()
    if key and len(key) < 16:
        raise TumorscopeError(path or API_KEY_VARIABLE, "the API key is shorter than 16 "
                              "characters; use a long random one (e.g. `openssl rand -hex 32`)")
    return key or None


def default_hosts(host: str) -> list[str]:
    """Loopback names, plus the address served on when it is a specific one."""
    hosts = ["localhost", "127.0.0.1", "::1", "[::1]"]
    return hosts if host in ("0.0.0.0", "::", *hosts) else [*hosts, host]


def run(args: argparse.Namespace) -> int:
    """Check the model, pass the settings to the workers (environment) and serve."""
    import json

    import uvicorn

    from tumorscope.inference.predictor import Predictor

    ckpt = (args.checkpoint or default_checkpoint()).resolve()
    # fail here, with one line, rather than in a worker: the card, the weights against it
    # (hash, finite values, shapes) and one prediction
    Predictor.from_checkpoint(ckpt, backend=args.backend).self_check()
    cases = args.case_checkpoint or shipped_case_model()
    if cases is not None:
        cases = cases.resolve()
        Predictor.from_checkpoint(cases, backend=args.backend).self_check()
    settings = {"checkpoint": str(ckpt), "case_checkpoint": str(cases) if cases else None,
                "max_upload_bytes": int(args.max_upload_mb * 2**20),
                "api_key": api_key(args.api_key_file),
                "allowed_hosts": args.allowed_hosts or default_hosts(args.host),
                "cors_origins": args.cors_origins,
                "max_elements": args.max_pixels, "max_concurrency": args.concurrency,
                "decode_budget": args.decode_budget or max(2 * args.max_pixels, CASE_ELEMENTS),
                "max_side": args.max_side, "max_uploads": args.max_uploads,
                "backend": args.backend,
                "save_uploads": str(args.save_uploads.resolve()) if args.save_uploads else None}
    if args.save_uploads:
        args.save_uploads.mkdir(parents=True, exist_ok=True)
    os.environ["TUMORSCOPE_SERVE_SETTINGS"] = json.dumps(settings)
    print(f"serving {ckpt} on http://{args.host}:{args.port}  (API docs: /docs)", flush=True)
    uvicorn.run("tumorscope.serve.factory:app_from_env", factory=True, host=args.host,
                port=args.port, workers=args.workers, log_level="info")
    return 0
