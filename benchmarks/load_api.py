"""Load benchmark of the JSON API on loopback: requests/s and p50/p95 latency at 1, 4 and 16
concurrent clients, errors counted. Starts its own ``tumorscope serve`` and stops it.

    python benchmarks/load_api.py --checkpoint models/default --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from doc import update_section


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scan() -> bytes:
    data_dir = Path(os.environ.get("TUMORSCOPE_DATA", "../shared/data")) / "figshare" / "images"
    if (data_dir / "1.jpg").is_file():
        return (data_dir / "1.jpg").read_bytes()
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (512, 512), np.uint8)).save(
        buf, "PNG")
    return buf.getvalue()


def start_server(checkpoint: Path, backend: str, *extra: str) -> tuple[subprocess.Popen, str]:
    """A ``tumorscope serve`` process on a free loopback port, once it says it is ready."""
    port = _port()
    exe = Path(sys.executable).with_name("tumorscope")
    server = subprocess.Popen([str(exe), "serve", "--checkpoint", str(checkpoint), "--port",
                               str(port), "--backend", backend, *extra],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    return server, url


def run_level(url: str, payload: bytes, clients: int, requests: int) -> dict[str, float]:
    """``requests`` POSTs spread over ``clients`` threads; latency of each, errors counted."""
    latencies: list[float] = []
    errors = 0

    def one(_: int) -> tuple[float, bool]:
        start = time.perf_counter()
        try:
            ok = httpx.post(f"{url}/api/v1/predict", files={"file": ("scan.jpg", payload)},
                            timeout=120).status_code == 200
        except httpx.HTTPError:
            ok = False
        return time.perf_counter() - start, ok

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for latency, ok in pool.map(one, range(requests)):
            latencies.append(latency)
            errors += not ok
    wall = time.perf_counter() - start
    return {"clients": clients, "requests": requests, "errors": errors,
            "rps": requests / wall, "p50_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * float(np.percentile(latencies, 95))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("models/default"))
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    server, url = start_server(args.checkpoint, args.backend)
    try:
        model_id = httpx.get(f"{url}/api/v1/models").json()[0]["model_id"]
        payload = _scan()
        run_level(url, payload, 2, 4)  # warm-up
        rows = [run_level(url, payload, c, args.requests) for c in args.levels]
    finally:
        server.terminate()
        server.wait(timeout=30)
    table = "\n".join(f"| {r['clients']} | {r['requests']} | {r['rps']:.1f} | {r['p50_ms']:.0f} | "
                      f"{r['p95_ms']:.0f} | {r['errors']} |" for r in rows)
    text = f"""## Web API under load (`benchmarks/load_api.py`)

Machine: {platform.machine()}, {os.cpu_count()} CPUs. Model `{model_id}`, server backend
`{args.backend}`, one server process, loopback HTTP, a 512x512 JPEG slice per request.

Command: `python benchmarks/load_api.py --checkpoint {args.checkpoint} --requests {args.requests}`

| clients | requests | requests/s | p50 ms | p95 ms | errors |
| --- | --- | --- | --- | --- | --- |
{table}
"""
    print(text)
    if args.out:
        update_section(args.out, "load-api", text)


if __name__ == "__main__":
    main()
