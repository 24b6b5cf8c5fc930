"""Two arms of models (one per training seed) compared on the same slices; shared by the
``paired_*`` scripts.

The per-model values come from a table with one row per slice; the difference of the arms'
means gets a patient-level paired bootstrap interval (whole patients resampled, the same
resample for every model), which covers the patients, not the seeds. With several seeds per
arm, Welch's t-test over the per-model values covers those.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tumorscope.metrics import bootstrap_ci

PerModel = Callable[[np.ndarray], np.ndarray]


def add_arm_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """Positional arm A, then ``--vs`` arm B."""
    parser.add_argument("a", type=Path, nargs="+", help=f"arm A's {what} (one per seed)")
    parser.add_argument("--vs", type=Path, nargs="+", help=f"arm B's {what} (default: the "
                        "last positional one, with one per arm)")


def split_arms(args: argparse.Namespace) -> tuple[list[Path], list[Path]]:
    """Arm A and arm B from the parsed arguments (an empty arm B when only one is given)."""
    if args.vs:
        return list(args.a), list(args.vs)
    return (list(args.a[:-1]), list(args.a[-1:])) if len(args.a) > 1 else (list(args.a), [])


def compare(table: np.ndarray, per_model: PerModel, arm_a: list[Path], arm_b: list[Path],
            patients: np.ndarray, name: str) -> list[str]:
    """Each model's value, then B - A of the arms' means with its interval and, given two or
    more models per arm, Welch's test over them. ``per_model`` maps rows of ``table`` to one
    value per model, arm A's first."""
    values = per_model(table)
    na = len(arm_a)
    lines = [f"  {arm} {value:.3f}  {path}" for arm, path, value
             in zip(["A"] * na + ["B"] * len(arm_b), [*arm_a, *arm_b], values, strict=True)]
    if not arm_b:
        return lines

    def difference(rows: np.ndarray) -> float:
        v = per_model(rows)
        return float(v[na:].mean() - v[:na].mean())

    low, high = bootstrap_ci(table, difference, 2000, groups=patients)
    lines.append(f"mean {name} A {values[:na].mean():.3f}, B {values[na:].mean():.3f}, "
                 f"B - A {difference(table):+.3f} [{low:+.3f}, {high:+.3f}] "
                 "(patients resampled)")
    if na > 1 and len(arm_b) > 1:
        from scipy.stats import ttest_ind

        test = ttest_ind(values[na:], values[:na], equal_var=False)
        lines.append(f"over seeds: A sd {values[:na].std(ddof=1):.3f}, B sd "
                     f"{values[na:].std(ddof=1):.3f}, Welch t = {test.statistic:.2f}, "
                     f"p = {test.pvalue:.3f}")
    return lines
