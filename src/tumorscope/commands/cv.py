"""``tumorscope cv``: patient-level k-fold cross-validation of a YAML experiment config."""

from __future__ import annotations

import argparse
from pathlib import Path

from tumorscope.errors import TumorscopeError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``cv`` sub-command."""
    p = sub.add_parser("cv", help="patient-level k-fold cross-validation",
                       description="Train one run per held-out fold (folds stratified by class "
                       "and grouped by patient; the next fold validates) and evaluate it there; "
                       "per-fold metrics, mean +- std and 95% intervals, cv.csv, summary.json "
                       "and cv.png. Rerun the same command to resume: finished folds are "
                       "skipped, interrupted runs resume from their last checkpoint.")
    p.add_argument("--config", "--hparams", dest="config", type=Path,
                   help="experiment YAML (configs/...)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--folds", type=int, help="number of folds (default: the config's "
                   "data.folds); on figshare, counts other than the 5 shipped folds are "
                   "computed by patient")
    p.add_argument("--only", type=int, nargs="+", metavar="FOLD",
                   help="run only these held-out folds (the summary covers every finished one)")
    p.add_argument("--data-root", help="dataset folder (overrides data.root)")
    p.add_argument("--out", type=Path, help="output folder (default: "
                   "<output.root>/<run name>-cv<K>)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Cross-validate, then print the mean +- std of each metric and the pooled accuracy."""
    from tumorscope.config import load_config
    from tumorscope.experiments.cv import cross_validate

    if args.config is None:
        raise TumorscopeError("--config", "give an experiment YAML (see configs/)")
    cfg = load_config(args.config, list(args.overrides))
    if cfg.data.pack:
        raise TumorscopeError("data.pack", "a pack holds one split's training and validation "
                              "slices; cross-validation reads the dataset")
    folds: int = args.folds if args.folds is not None else cfg.data.folds
    out: Path = args.out or Path(cfg.output.root) / f"{cfg.run_name}-cv{folds}"
    result = cross_validate(cfg, folds, out, args.data_root, args.only)
    for name, s in result.summary["metrics"].items():
        print(f"{name}: {s['mean']:.3f} +- {s['std']:.3f} "
              f"(95% CI {s['ci95_low']:.3f}-{s['ci95_high']:.3f}, {s['folds']} folds)")
    if (pooled := result.summary["pooled"]) is not None:
        ci = pooled.get("accuracy_ci95")
        interval = f" [{ci[0]:.3f}, {ci[1]:.3f}] (patient bootstrap)" if ci else ""
        print(f"pooled accuracy: {pooled['accuracy']:.3f}{interval} over {pooled['slices']} "
              f"slices, {pooled['patients']} patients")
    state = "complete" if result.complete else \
        f"{len(result.results)} of {folds} folds finished"
    print(f"cross-validation {state}: {out / 'cv.csv'}, {out / 'summary.json'}, "
          f"{out / 'cv.png'}")
    return 0
