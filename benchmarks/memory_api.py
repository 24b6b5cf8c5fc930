"""Peak memory of one ``tumorscope serve`` process under worst-case uploads (Linux only).

Baseline in the same run: the idle server and 16 concurrent ordinary 512x512 slices. Worst
cases, 16 concurrent uploads each: a highly compressed PNG at the pixel limit, a gzipped NIfTI
volume at the element limit, and near-limit uploads that are refused. Peak resident memory
(``VmHWM``, reset before each scenario) and what stays resident afterwards are reported.

    python benchmarks/memory_api.py --checkpoint models/default --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import platform
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from doc import update_section
from load_api import _scan, start_server

GOAL_MB = 2048


def _status(pid: int, key: str) -> float:
    """A ``/proc/<pid>/status`` memory figure (VmRSS, VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


def _disc(side: int) -> np.ndarray:
    """A dark image with a bright disc: compresses to almost nothing, passes content checks."""
    yy, xx = np.ogrid[:side, :side]
    return (((yy - side / 2) ** 2 + (xx - side / 2) ** 2) < (side / 5) ** 2).astype(np.uint8) * 200


def payloads(max_pixels: int, max_upload: int) -> dict[str, tuple[str, bytes]]:
    """Name -> (file name, bytes) of every upload kind measured."""
    side = int(max_pixels ** 0.5)
    buf = io.BytesIO()
    Image.fromarray(_disc(side)).save(buf, "PNG", optimize=True)
    depth = max_pixels // (256 * 256)
    volume = np.repeat(_disc(256)[:, :, None], depth, axis=2).astype(np.float32)
    nifti = gzip.compress(nib.Nifti1Image(volume, np.eye(4)).to_bytes(), compresslevel=1)
    junk = np.random.default_rng(0).integers(0, 256, max_upload - 2**20, np.uint8).tobytes()
    return {"ordinary 512x512 JPEG slice": ("slice.jpg", _scan()),
            f"PNG {side}x{side} ({len(buf.getvalue()) // 1024} KB)": ("bomb.png", buf.getvalue()),
            f"NIfTI 256x256x{depth} float32 ({len(nifti) // 1024} KB gz)":
                ("volume.nii.gz", nifti),
            f"refused: {len(junk) // 2**20} MiB unreadable": ("junk.png", junk)}


def storm(url: str, name: str, data: bytes, clients: int) -> Counter[int]:
    """``clients`` simultaneous uploads of one file; status codes counted."""
    def one(_: int) -> int:
        try:
            return httpx.post(f"{url}/api/v1/predict", files={"file": (name, data)},
                              timeout=600).status_code
        except httpx.HTTPError:
            return 0
    with ThreadPoolExecutor(max_workers=clients) as pool:
        return Counter(pool.map(one, range(clients)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("models/default"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--serve-args", nargs=argparse.REMAINDER, default=[],
                        help="extra `tumorscope serve` flags (e.g. --max-pixels N)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from tumorscope.io.scan import DEFAULT_MAX_ELEMENTS

    server, url = start_server(args.checkpoint, args.backend, *args.serve_args)
    rows = []
    try:
        storm(url, "slice.jpg", _scan(), 2)  # warm-up
        time.sleep(1)
        idle = _status(server.pid, "VmRSS")
        for label, (name, data) in payloads(DEFAULT_MAX_ELEMENTS, 50 * 2**20 - 1).items():
            _reset_peak(server.pid)
            start = time.perf_counter()
            codes = storm(url, name, data, args.clients)
            wall = time.perf_counter() - start
            time.sleep(2)
            rows.append((label, codes, wall, _status(server.pid, "VmHWM"),
                         _status(server.pid, "VmRSS")))
    finally:
        server.terminate()
        server.wait(timeout=30)
    worst = max(r[3] for r in rows)
    table = "\n".join(
        f"| {label} | {', '.join(f'{n}x {c}' for c, n in sorted(codes.items()))} | "
        f"{wall:.1f} | {peak:.0f} | {after:.0f} |" for label, codes, wall, peak, after in rows)
    text = f"""## Server memory under worst-case uploads (`benchmarks/memory_api.py`)

Machine: {platform.machine()}, {os.cpu_count()} CPUs. One `tumorscope serve` process with its
default limits (`--max-pixels {DEFAULT_MAX_ELEMENTS:,}`, 50 MB uploads, 4 predictions at a
time), model `{args.checkpoint}`, backend `{args.backend}`; {args.clients} clients upload the
same file at once. Peak = `VmHWM` of the server process, reset before each row; after = its
resident memory 2 s later. Baseline: the idle server holds {idle:.0f} MB, and the first row
is ordinary traffic.

Command: `python benchmarks/memory_api.py --checkpoint {args.checkpoint}`

| {args.clients} concurrent uploads of | answers | seconds | peak MB | after MB |
| --- | --- | --- | --- | --- |
{table}

Worst peak: **{worst:.0f} MB** (goal: at most {GOAL_MB} MB; {'met' if worst <= GOAL_MB else
'NOT met'}), {worst - idle:.0f} MB above the idle server.
"""
    print(text)
    if args.out:
        update_section(args.out, "memory-api", text)


if __name__ == "__main__":
    main()
