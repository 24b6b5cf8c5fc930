"""Paired detection AUROC difference of two models evaluated on the same slices.

    python scripts/paired_detection.py A/metrics.json B/metrics.json

Reads each ``tumorscope evaluate`` output's per-slice ``tumour_score``, matches slices by id,
and prints both AUROCs and B - A with a patient-level paired bootstrap 95% interval (whole
patients resampled, the same resample for both models).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tumorscope.metrics import bootstrap_ci
from tumorscope.uncertainty import auroc


def _scores(path: Path) -> dict[str, tuple[str, bool, float]]:
    rows = json.loads(path.read_text(encoding="utf-8"))["per_image"]
    if any(r.get("tumour_score") is None for r in rows):
        raise SystemExit(f"{path}: no per-slice tumour_score (re-run tumorscope evaluate)")
    return {r["id"]: (r["patient"], r["true"] != "no tumour", float(r["tumour_score"]))
            for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args()
    a, b = _scores(args.a), _scores(args.b)
    ids = sorted(set(a) & set(b))
    if not ids:
        raise SystemExit("the two evaluations share no slice")
    patients = np.array([a[i][0] for i in ids])
    table = np.array([[a[i][2], b[i][2], float(a[i][1])] for i in ids])

    def difference(rows: np.ndarray) -> float:
        positive = rows[:, 2] > 0.5
        return auroc(rows[:, 1], positive) - auroc(rows[:, 0], positive)

    low, high = bootstrap_ci(table, difference, 2000, groups=patients)
    positive = table[:, 2] > 0.5
    print(f"{len(ids)} slices, {len(set(patients.tolist()))} patients: AUROC A "
          f"{auroc(table[:, 0], positive):.3f}, B {auroc(table[:, 1], positive):.3f}, "
          f"B - A {difference(table):+.3f} [{low:+.3f}, {high:+.3f}]")


if __name__ == "__main__":
    main()
