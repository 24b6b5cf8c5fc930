"""Paired detection AUROC difference of two recipes evaluated on the same slices.

    python scripts/paired_detection.py A/metrics.json B/metrics.json
    python scripts/paired_detection.py A1.json A2.json A3.json --vs B1.json B2.json B3.json

Reads each ``tumorscope evaluate`` output's per-slice ``tumour_score``, matches slices by id,
and prints each model's AUROC and, for the mean AUROC over each arm's models (one per
training seed), B - A with a patient-level paired bootstrap 95% interval (whole patients
resampled, the same resample for every model). That interval covers the patients, not the
seeds; with several seeds per arm, Welch's t-test over the per-seed AUROCs covers those.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from arms import add_arm_arguments, compare, split_arms

from tumorscope.uncertainty import auroc


def _scores(path: Path) -> dict[str, tuple[str, bool, float]]:
    rows = json.loads(path.read_text(encoding="utf-8"))["per_image"]
    if any(r.get("tumour_score") is None for r in rows):
        raise SystemExit(f"{path}: no per-slice tumour_score (re-run tumorscope evaluate)")
    return {r["id"]: (r["patient"], r["true"] != "no tumour", float(r["tumour_score"]))
            for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arm_arguments(parser, "metrics.json")
    arm_a, arm_b = split_arms(parser.parse_args())
    if not arm_a or not arm_b:
        raise SystemExit("give two metrics.json files, or arm A's files then --vs arm B's")
    runs = [_scores(p) for p in [*arm_a, *arm_b]]
    ids = sorted(set.intersection(*(set(r) for r in runs)))
    if not ids:
        raise SystemExit("the evaluations share no slice")
    patients = np.array([runs[0][i][0] for i in ids])
    # columns: each model's score, then the truth
    table = np.array([[r[i][2] for r in runs] + [float(runs[0][i][1])] for i in ids])

    def per_model(rows: np.ndarray) -> np.ndarray:
        positive = rows[:, -1] > 0.5
        return np.array([auroc(rows[:, k], positive) for k in range(rows.shape[1] - 1)])

    print(f"{len(ids)} slices, {len(set(patients.tolist()))} patients")
    print("\n".join(compare(table, per_model, arm_a, arm_b, patients, "AUROC")))


if __name__ == "__main__":
    main()
