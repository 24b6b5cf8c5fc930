"""``tumorscope calibrate``: temperature, "no tumour" threshold, out-of-distribution
reference and mask rule fitted on the model's validation fold (evaluation/calibrate.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``calibrate`` sub-command."""
    p = sub.add_parser("calibrate", help="fit temperature, no-tumour threshold and OOD "
                       "reference on the validation fold",
                       description="Fits, on the model's validation fold only: temperature "
                       "scaling (ECE before/after) and the tumour / no-tumour threshold "
                       "(models with a 'no tumour' class), for classifiers and joint models; "
                       "for joint models also the feature-distance reference that "
                       "flags images unlike the training data and the mask rule (threshold, "
                       "and a rescue for found tumours with an empty mask, by validation "
                       "Dice). Writes the calibrated model "
                       "to --out with a reliability diagram (calibration.png).")
    p.add_argument("--checkpoint", type=Path, required=True, help="model folder")
    p.add_argument("--out", type=Path, required=True, help="folder for the calibrated model")
    p.add_argument("--data-root", help="dataset folder (default: the one in the model card)")
    p.add_argument("--max-train", type=int, default=3000,
                   help="training slices used for the feature reference (evenly spread)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--false-alarms", type=float, metavar="RATE",
                   help="choose the no-tumour threshold that catches the most tumours with at "
                   "most RATE of tumour-free validation slices called tumours (e.g. 0.05 for "
                   "a screening operating point); default: maximise sensitivity + specificity")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Calibrate and print what was fitted."""
    from tumorscope.evaluation.calibrate import calibrate

    out, card = calibrate(args.checkpoint, args.out, args.data_root, args.max_train,
                          args.batch_size, args.false_alarms)
    cal = card.calibration
    assert cal is not None
    print(f"temperature {cal.temperature:.3f}: ECE {cal.ece_before:.3f} -> {cal.ece_after:.3f} "
          f"on {cal.fitted_on}")
    if cal.tumour_threshold is not None:
        d = cal.detection_validation
        print(f"no-tumour rule: tumour when 1 - p({cal.no_tumour_class}) >= "
              f"{cal.tumour_threshold:.3f}, {cal.tumour_rule} (validation AUROC "
              f"{d['auroc']:.3f}, sensitivity "
              f"{d['sensitivity']:.3f}, specificity {d['specificity']:.3f})")
    if cal.mask_threshold is not None:
        v = cal.mask_dice_validation
        print(f"mask rule: threshold {cal.mask_threshold:g}, rescue {cal.mask_rescue} "
              f"(validation Dice {v['dice_at_0.5']:.3f} at 0.5 alone -> {v['dice']:.3f})")
    if cal.ood_threshold is not None and cal.ood_validation_flag_rate is not None:
        print(f"out-of-distribution threshold {cal.ood_threshold:.1f} (feature distance; "
              f"{cal.ood_validation_flag_rate:.1%} of validation flagged)")
    print(f"calibrated model written to {out}")
    return 0
