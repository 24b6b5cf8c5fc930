"""Tumour-type accuracy of joint models on one fold's tumour slices, and two arms compared.

    python scripts/type_accuracy.py A1 A2 A3 --vs B1 B2 B3 --sources lgg

For each model (a ``tumorscope calibrate`` output), on the tumour slices of ``--sources``'
fold (default 0, the held-out one): the accuracy of the highest tumour class ("type", the
question "which tumour is it?" asked of a slice that has one) with a patient-bootstrap 95%
interval; the accuracy of the whole answer ("answer": found at the calibrated "no tumour"
threshold and typed right; the type alone for a model without a "no tumour" class); "type"
by class (with several) and by image channel (where known); and what the wrong types were;
optionally with every slice degraded by one of ``tumorscope robustness``'s corruptions.
Then, for both measures, arm B's mean minus arm A's, as ``paired_detection.py`` does for
detection. Experiment code for docs/trust.md; it trains nothing and writes nothing.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
from arms import add_arm_arguments, compare, split_arms
from detection_diagnostics import fold_records, run

from tumorscope.data.slices import load_record
from tumorscope.experiments.robustness import NAMES
from tumorscope.inference.joint import JointInferer
from tumorscope.inference.predictor import Predictor
from tumorscope.metrics import bootstrap_ci


def _mean_ci(hits: np.ndarray, patients: np.ndarray) -> str:
    low, high = bootstrap_ci(hits, lambda rows: float(rows.mean()), 2000, groups=patients)
    return f"{hits.mean():.3f} [{low:.3f}, {high:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arm_arguments(parser, "model folder")
    parser.add_argument("--sources", nargs="+", required=True)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--corruption", default="none", choices=list(NAMES),
                        help="degrade every slice as tumorscope robustness does")
    args = parser.parse_args()
    arm_a, arm_b = split_arms(args)
    typed_cols, answer_cols = [], []
    first: list[str] | None = None
    patients = np.array([])
    for path in [*arm_a, *arm_b]:
        predictor = Predictor.from_checkpoint(path, backend="torch")
        inferer = predictor.inferer
        if not isinstance(inferer, JointInferer):
            raise SystemExit(f"{path}: not a joint model")
        records = [r for r in fold_records(predictor, args.sources, args.fold)
                   if load_record(r)[1].any()]
        if first is None:
            first = [r.id for r in records]
            patients = np.array([r.patient for r in records])
        elif [r.id for r in records] != first:
            raise SystemExit(f"{path}: its fold {args.fold} is not the first model's")
        probs = run(inferer, records, args.corruption).probs
        none = inferer.no_tumour
        called = np.array([inferer.tumour_type(row) for row in probs])
        labels = np.array([r.label for r in records])
        typed = called == labels
        found = (np.ones(len(records), dtype=bool) if none is None  # always a tumour
                 else 1 - probs[:, none] >= inferer.calibration.tumour_threshold)
        answer = typed & found
        typed_cols.append(typed)
        answer_cols.append(answer)
        names = inferer.classes
        wrong = Counter(names[c] for c in called[~typed])
        print(f"{path} on {'+'.join(args.sources)} fold {args.fold}: {len(records)} tumour "
              f"slices of {len(set(patients.tolist()))} patients, corruption {args.corruption}")
        print(f"  type {_mean_ci(typed.astype(float), patients)}; answer "
              f"{_mean_ci(answer.astype(float), patients)}; wrong types: "
              + (", ".join(f"{n} {k}" for n, k in wrong.most_common()) or "none"))
        if len(set(labels.tolist())) > 1:
            print("  type by class: " + ", ".join(
                f"{names[c]} {typed[labels == c].mean():.3f} ({(labels == c).sum()})"
                for c in sorted(set(labels.tolist()))))
        channels = np.array([-1 if r.channel is None else r.channel for r in records])
        for c in sorted(set(channels.tolist()) - {-1}):
            keep = channels == c
            print(f"  channel {c}: {keep.sum()} slices, type {typed[keep].mean():.3f}")
    for name, cols in (("type accuracy", typed_cols), ("answer accuracy", answer_cols)):
        print(name)
        table = np.stack(cols, axis=1).astype(float)
        print("\n".join(compare(table, lambda rows: rows.mean(axis=0), arm_a, arm_b, patients,
                                name)))


if __name__ == "__main__":
    main()
