"""Which fingerprint ``tumorscope check-data`` uses, measured on real data: how strongly a
copy of a slice (re-encoded, shrunk, blurred, noisier, brighter, mirrored; or shifted, cropped,
rotated, equalised) correlates with its original, and how many pairs of *different patients*
reach each correlation, for the audit's fingerprint (32x32 minus its Gaussian blur) and for the
plain 32x32 one.

    python benchmarks/audit_fingerprint.py --data figshare=../shared/data/figshare \
        --data lgg=../shared/data/lgg --samples 400
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from tumorscope.data import load_index
from tumorscope.data.audit import fingerprint, mirror, similar_pairs
from tumorscope.data.slices import load_record

Copy = Callable[[np.ndarray], np.ndarray]


def _jpeg(quality: int) -> Copy:
    def copy(g: np.ndarray) -> np.ndarray:
        _, buf = cv2.imencode(".jpg", (g * 255).astype(np.uint8),
                              [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(buf, 0).astype(np.float32) / 255
    return copy


def _warp(g: np.ndarray, angle: float, dx: float) -> np.ndarray:
    h, w = g.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    m[0, 2] += dx * w
    return cv2.warpAffine(g, m, (w, h))


def _stretch(g: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(g, [1, 99])
    return np.clip((g - lo) / max(hi - lo, 1e-6), 0, 1)


COPIES: dict[str, Copy] = {
    "JPEG quality 30": _jpeg(30),
    "JPEG quality 75": _jpeg(75),
    "4x smaller, enlarged again": lambda g: cv2.resize(cv2.resize(
        g, (g.shape[1] // 4, g.shape[0] // 4), interpolation=cv2.INTER_AREA), g.shape[::-1]),
    "Gaussian blur (1 px)": lambda g: cv2.GaussianBlur(g, (0, 0), 1.0),
    "noise (sd 2% of range)": lambda g: (g + np.random.default_rng(0).normal(
        0, 0.02, g.shape)).astype(np.float32),
    "gamma 0.7": lambda g: g ** 0.7,
    "gamma 1.5": lambda g: g ** 1.5,
    "contrast stretch 1-99%": _stretch,
    "mirrored (left-right)": lambda g: np.ascontiguousarray(g[:, ::-1]),
    "shifted 2% of width": lambda g: _warp(g, 0, 0.02),
    "rotated 3 degrees": lambda g: _warp(g, 3, 0),
    "cropped 5% each side": lambda g: cv2.resize(
        g[g.shape[0] // 20:-(g.shape[0] // 20), g.shape[1] // 20:-(g.shape[1] // 20)],
        g.shape[::-1], interpolation=cv2.INTER_AREA),
    "histogram equalised": lambda g: cv2.equalizeHist(
        (g * 255).astype(np.uint8)).astype(np.float32) / 255,
}


def plain(pixels: np.ndarray) -> np.ndarray | None:
    """The plain fingerprint: 32x32 area average, z-normalised (no blur removed)."""
    return fingerprint(pixels, blur=None)


METHODS = {"audit (minus blur)": fingerprint, "plain 32x32": plain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="append", required=True, metavar="NAME=ROOT")
    parser.add_argument("--samples", type=int, default=400, help="slices copied per variant")
    args = parser.parse_args()
    grays, owners = [], []
    for value in args.data:
        name, _, root = value.partition("=")
        for record in load_index(name, Path(root)).records:
            g = load_record(record)[0].astype(np.float32)
            g = g.mean(axis=0) if g.ndim == 3 else g[0]
            grays.append((g - g.min()) / max(float(np.ptp(g)), 1e-6))
            owners.append(f"{name}/{record.patient}")
    rng = np.random.default_rng(0)
    picked = rng.choice(len(grays), min(args.samples, len(grays)), replace=False)
    print(f"{len(grays)} slices; copies of {len(picked)} random slices\n")
    print("| copy | " + " | ".join(f"{m}: min / 1st percentile" for m in METHODS) + " |")
    print("| --- |" + " ---: |" * len(METHODS))
    prints = {m: np.stack([f(g[None]) for g in grays]) for m, f in METHODS.items()}
    for copy_name, copy in COPIES.items():
        cells = []
        for m, f in METHODS.items():
            r = []
            for i in picked:
                c = f(copy(grays[i])[None])
                r.append(max(float(c @ prints[m][i]), float(mirror(c[None])[0] @ prints[m][i])))
            cells.append(f"{min(r):.3f} / {np.percentile(r, 1):.3f}")
        print(f"| {copy_name} | " + " | ".join(cells) + " |")
    print("\n| fingerprint | pairs of two patients at r >= 0.90 | >= 0.95 | >= 0.98 | highest |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for m in METHODS:
        corr = [c for i, j, c, _ in similar_pairs(prints[m], 0.9) if owners[i] != owners[j]]
        print(f"| {m} | {len(corr)} | {sum(c >= 0.95 for c in corr)} | "
              f"{sum(c >= 0.98 for c in corr)} | {max(corr, default=float('nan')):.3f} |")


if __name__ == "__main__":
    main()
