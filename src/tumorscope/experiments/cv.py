"""Patient-level k-fold cross-validation (``tumorscope cv``): one training run per held-out
fold (folds stratified by class and grouped by patient), each evaluated on its fold by
``tumorscope evaluate``; then per-fold metrics, their mean, std and 95% interval, the accuracy
pooled over every held-out slice, a CSV and a plot. Resumable fold by fold: finished folds
are skipped, interrupted runs resume from their newest checkpoint."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from tumorscope.config import ExperimentConfig, build_config
from tumorscope.data.prepare import prepare_split
from tumorscope.data.splits import make_split
from tumorscope.errors import TumorscopeError
from tumorscope.evaluation.result import EvaluationResult, read_result
from tumorscope.experiments.pretrain import finish_run, pretrain_settings
from tumorscope.io.writers import write_atomic, write_json
from tumorscope.metrics import bootstrap_ci, classification_metrics

log = logging.getLogger("tumorscope.cv")
PLAN = "cv.json"  # what an output folder cross-validates (a second config may not mix in)
ID_COLUMNS = ("fold", "slices", "patients")
PLOTTED = ("accuracy", "macro_f1", "WT_dice", "TC_dice", "ET_dice")  # those a model has
Row = dict[str, float]
CARD_COLUMNS = tuple(f"{r}_{m}" for m in ("dice", "hd95") for r in ("WT", "TC", "ET"))


@dataclass
class CvResult:
    """The finished folds' evaluations, their table (one row per fold) and the summary."""

    folds: int
    out: Path
    results: dict[int, EvaluationResult]
    rows: list[Row]
    summary: dict[str, Any]

    @property
    def complete(self) -> bool:
        """Every fold has been held out and evaluated."""
        return set(self.results) == set(range(self.folds))


def fold_config(cfg: ExperimentConfig, folds: int, k: int) -> ExperimentConfig:
    """``cfg`` for the run holding out fold ``k`` of ``folds`` (validation: the next fold)."""
    tree = cfg.model_dump(mode="json")
    tree["data"].update(folds=folds, test_fold=k, val_fold=(k + 1) % folds)
    tree["output"]["run_name"] = f"{cfg.run_name}-cv{folds}-f{k}"
    return build_config(tree, f"cross-validation fold {k}")


def check_partition(held_out: Sequence[set[str]], patients: set[str], where: str | Path) -> None:
    """Raise unless the held-out folds are non-empty, disjoint by patient and cover every
    patient exactly once."""
    seen = Counter(p for fold in held_out for p in fold)
    empty = [k for k, fold in enumerate(held_out) if not fold]
    twice = sorted(p for p, n in seen.items() if n > 1)
    missed = sorted(patients - set(seen))
    problems = [f"fold(s) {empty} hold no patient" if empty else "",
                f"patient(s) {twice[:5]} in more than one fold" if twice else "",
                f"patient(s) {missed[:5]} in no fold" if missed else ""]
    if any(problems):
        raise TumorscopeError(where, "folds are not a partition of the patients: "
                              + "; ".join(p for p in problems if p))


def fold_patients(cfg: ExperimentConfig, folds: int, data_root: str | None = None
                  ) -> list[set[str]]:
    """The held-out patients of each fold, as training and evaluation split them; checked to
    be disjoint and to cover every patient once (a one-line error otherwise)."""
    index, _ = prepare_split(fold_config(cfg, folds, 0), data_root)
    held_out = [{r.patient for r in make_split(index, folds, k, None, cfg.seed,
                                               cfg.data.fold_source).test}
                for k in range(folds)]
    check_partition(held_out, {r.patient for r in index.records}, index.root)
    return held_out


def claim_output(cfg: ExperimentConfig, folds: int, out: Path) -> None:
    """Record what ``out`` cross-validates; refuse a folder holding another cross-validation
    (its finished folds would be mixed into this one's summary)."""
    plan = {"run_name": cfg.run_name, "folds": folds, "dataset": cfg.data.dataset,
            "seed": cfg.seed, "fold_source": cfg.data.fold_source,
            "pretrain": (settings := pretrain_settings(cfg)) and settings.model_dump(mode="json"),
            "runs": [str(fold_config(cfg, folds, k).run_dir) for k in range(folds)]}
    path = out / PLAN
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        differ = sorted(k for k in ("run_name", "folds", "dataset", "seed", "fold_source",
                                    "pretrain")
                        if old.get(k) != plan[k])
        if differ:
            raise TumorscopeError(out, f"holds another cross-validation (its {', '.join(differ)} "
                                  "differ); give another --out")
    write_json(path, plan)


def read_plan(out: Path) -> int:
    """The number of folds a ``tumorscope cv`` output folder cross-validates."""
    path = Path(out) / PLAN
    if not path.is_file():
        raise TumorscopeError(out, f"no {PLAN}: not a `tumorscope cv` output folder")
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["folds"])
    except (ValueError, KeyError, TypeError):
        raise TumorscopeError(path, "is not a cross-validation plan (no number of folds)") \
            from None


def run_fold(cfg: ExperimentConfig, folds: int, k: int, out: Path,
             data_root: str | None = None) -> EvaluationResult:
    """Train (or resume) the run holding out fold ``k`` and evaluate it there, writing
    ``out/fold-k/metrics.json`` and ``report.html``; a fold already evaluated is read back."""
    from tumorscope.evaluation.evaluate import evaluate

    metrics = out / f"fold-{k}" / "metrics.json"
    if metrics.is_file():
        log.info("fold %d: finished earlier (%s); skipped", k, metrics)
        return read_result(metrics)
    model = finish_run(fold_config(cfg, folds, k), data_root)
    result = evaluate(model, k, metrics.parent, data_root)
    log.info("fold %d: %s", k, describe(fold_row(result)))
    return result


def fold_row(result: EvaluationResult) -> Row:
    """One CSV row: the fold's size and its headline metrics (per-class F1, Dice when the
    model segments, region Dice and HD95 for volume models)."""
    row: Row = {"fold": result.fold, "slices": result.split.slices,
                "patients": result.split.patients}
    if (c := result.classification) is not None:
        row |= {"accuracy": c.accuracy, "macro_f1": c.macro_f1}
        row |= {f"f1_{name.replace(' ', '_')}": s.f1 for name, s in c.per_class.items()}
    if (s := result.segmentation) is not None:
        row["dice_mean_tumour"] = s.dice_mean_tumour
    if (cases := result.cases) is not None:
        row |= {name: m.mean for name, m in cases.summary.items()
                if name.endswith(("_dice", "_hd95"))}
    return row


def describe(row: Row) -> str:
    """A fold's row as one log line."""
    size = (f"{int(row['slices'])} slices, " if row["slices"] else "") + \
        f"{int(row['patients'])} patients"
    values = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k not in ID_COLUMNS)
    return f"{size}: {values}"


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample std and the t-based 95% interval of the mean over folds (NaN folds,
    e.g. Dice of a fold without tumour slices, are left out; NaN below two folds)."""
    from scipy import stats

    x = np.array([v for v in values if math.isfinite(v)], dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half,
            "folds": n}


def pooled(results: Sequence[EvaluationResult]) -> dict[str, Any] | None:
    """Accuracy and macro-F1 over every held-out slice at once (summed confusion matrices),
    the accuracy with a patient-level bootstrap 95% interval (from the folds' per-slice
    rows, each patient held out once); None for models that do not classify."""
    found = [c for r in results if (c := r.classification) is not None]
    if not found:
        return None
    cm = np.sum([np.array(c.confusion_matrix) for c in found], axis=0)
    m = classification_metrics(cm, found[0].classes)
    rows = [(p.patient, p.true == p.predicted) for r in results for p in r.per_image]
    interval = None
    if rows:
        patients, correct = zip(*rows, strict=True)
        interval = list(bootstrap_ci(np.array(correct, float), np.mean, 1000,
                                     groups=np.array(patients)))
    return {"accuracy": cast(float, m["accuracy"]), "accuracy_ci95": interval,
            "macro_f1": cast(float, m["macro_f1"]), "slices": int(cm.sum()),
            "patients": sum(r.split.patients for r in results)}


def pooled_cases(results: Sequence[EvaluationResult]) -> dict[str, Any] | None:
    """For volume models: every held-out case at once (each case is held out by one fold),
    its fold and Dice/HD95 per region, and the mean over cases with a case-level bootstrap
    95% interval; None for slice models."""
    per_case = {case: {"fold": r.fold, **values} for r in results if r.cases is not None
                for case, values in r.cases.per_case.items()}
    if not per_case:
        return None
    common = set.intersection(*(set(v) for v in per_case.values()))
    keys = [k for k in next(iter(per_case.values()))
            if k in common and k.endswith(("_dice", "_hd95"))]
    summary = {}
    for k in keys:
        x = np.array([float(v[k]) for v in per_case.values()])
        low, high = bootstrap_ci(x, np.mean, 1000)
        summary[k] = {"mean": float(x.mean()), "ci95_low": low, "ci95_high": high}
    return {"cases": per_case, "summary": summary,
            "interval": "95% case-level bootstrap interval of the mean over held-out cases"}


def summarise(rows: Sequence[Row], results: Sequence[EvaluationResult], folds: int
              ) -> dict[str, Any]:
    """``summary.json``: which folds finished, each metric's spread over folds, the pooled
    accuracy (slice models) or per-case numbers (volume models)."""
    names = list(dict.fromkeys(k for row in rows for k in row if k not in ID_COLUMNS))
    finished = [int(row["fold"]) for row in rows]
    return {"folds": folds, "finished": finished, "complete": len(finished) == folds,
            "interval": "95% t-interval of the mean over folds",
            "metrics": {k: spread([row.get(k, math.nan) for row in rows]) for k in names},
            "pooled": pooled(results), "pooled_cases": pooled_cases(results)}


def cv_png(rows: Sequence[Row], summary: dict[str, Any], path: Path) -> Path:
    """Per-fold points and mean +- std bars for accuracy and macro-F1, or region Dice (or
    else the first Dice-like metrics)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spreads: dict[str, dict[str, float]] = summary["metrics"]
    shown = [k for k in PLOTTED if k in spreads] or [
        k for k in spreads if not k.endswith("_hd95")][:4]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(shown), 3.6))
    for x, name in enumerate(shown):
        values = [row.get(name, math.nan) for row in rows]
        ax.scatter(x + np.linspace(-0.12, 0.12, len(values)), values, s=18, alpha=0.7,
                   color="#3a7bd5", label="folds" if x == 0 else None)
        s = spreads[name]
        ax.errorbar(x + 0.3, s["mean"], yerr=0 if math.isnan(s["std"]) else s["std"], fmt="o",
                    color="black", capsize=4, label="mean ± std" if x == 0 else None)
    ax.set_xticks(range(len(shown)), shown)
    ax.set_xlim(-0.6, len(shown) - 0.3)
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"{summary['folds']}-fold cross-validation ({len(rows)} folds finished)")
    write_atomic(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def collect(out: Path, folds: int) -> CvResult:
    """Every finished fold of ``out``, its table and summary (nothing written)."""
    results = {k: read_result(p) for k in range(folds)
               if (p := out / f"fold-{k}" / "metrics.json").is_file()}
    if not results:
        raise TumorscopeError(out, "no finished fold to summarise")
    rows = [fold_row(r) for r in results.values()]
    summary = summarise(rows, list(results.values()), folds)
    return CvResult(folds, out, results, rows, summary)


def aggregate(out: Path, folds: int) -> CvResult:
    """Read every finished fold of ``out``; write ``cv.csv``, ``summary.json`` and
    ``cv.png``."""
    import pandas as pd

    result = collect(out, folds)
    frame = pd.DataFrame(result.rows).astype({c: int for c in ID_COLUMNS})
    write_atomic(out / "cv.csv", lambda p: frame.to_csv(p, index=False))
    write_json(out / "summary.json", result.summary)
    cv_png(result.rows, result.summary, out / "cv.png")
    return result


def card_columns(names: Sequence[str]) -> list[str]:
    """The metrics a card shows: region Dice and HD95 for volume models (the rest stays in
    summary.json), else all."""
    return [k for k in CARD_COLUMNS if k in names] or list(names)


def cv_markdown(result: CvResult, command: str = "") -> str:
    """The cross-validation section of a model card: per-fold rows with the mean, std and
    t-interval over folds (distances clipped at 0), and (volume models) every held-out
    case."""
    spreads: dict[str, dict[str, float]] = result.summary["metrics"]
    names = card_columns(list(spreads))
    head = "| fold | patients | " + " | ".join(names) + " |\n|" + " --- |" * (len(names) + 2)
    rows = [f"| {int(r['fold'])} | {int(r['patients'])} | "
            + " | ".join(_fmt(r.get(k, math.nan), k) for k in names) + " |"
            for r in result.rows]
    mean = ("| mean ± std [95% t-interval] | | " + " | ".join(
        f"{_fmt(s['mean'], k)} ± {_fmt(s['std'], k)} [{_fmt(_low(s['ci95_low'], k), k)}, "
        f"{_fmt(s['ci95_high'], k)}]" for k, s in ((k, spreads[k]) for k in names)) + " |")
    text = [f"## {result.folds}-fold cross-validation ({len(result.rows)} folds finished)", "",
            "The recipe trained again with each fold held out in turn (the next fold selects "
            "the model; folds by patient), every number on the held-out fold only.", "", head,
            *rows, mean]
    if (slices := result.summary.get("pooled")) and slices.get("accuracy_ci95"):
        low, high = slices["accuracy_ci95"]
        text += ["", f"Pooled over every held-out slice ({slices['slices']} slices, "
                 f"{slices['patients']} patients): accuracy {slices['accuracy']:.3f} "
                 f"[{low:.3f}, {high:.3f}] (patient-level bootstrap 95% interval), macro-F1 "
                 f"{slices['macro_f1']:.3f}."]
    cases = result.summary.get("pooled_cases")
    if cases:
        keys = card_columns(list(cases["summary"]))
        text += ["", f"Every held-out case ({len(cases['cases'])}; mean "
                 f"[{cases['interval']}]):", "",
                 "| case | fold | " + " | ".join(keys) + " |\n|" + " --- |" * (len(keys) + 2)]
        text += [f"| {c} | {v['fold']} | " + " | ".join(_fmt(v[k], k) for k in keys) + " |"
                 for c, v in cases["cases"].items()]
        text.append("| **mean** | | " + " | ".join(
            f"{_fmt(s['mean'], k)} [{_fmt(s['ci95_low'], k)}, {_fmt(s['ci95_high'], k)}]"
            for k, s in ((k, cases["summary"][k]) for k in keys)) + " |")
    if command:
        text += ["", f"Command: `{command}`"]
    return "\n".join(text) + "\n"


def _low(value: float, name: str) -> float:
    """A distance's lower bound is at least 0 (a symmetric t-interval can cross it)."""
    return max(0.0, value) if name.endswith("_hd95") and math.isfinite(value) else value


def _fmt(value: float, name: str) -> str:
    """Distances (HD95, mm) to 0.1, scores to 0.001; n/a when undefined."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.1f}" if name.endswith("_hd95") else f"{value:.3f}"


def folds_to_run(folds: int, only: Sequence[int] | None) -> list[int]:
    """The held-out folds to run: ``only`` (checked), else all."""
    if folds < 2:
        raise TumorscopeError("--folds", f"cross-validation needs at least 2 folds, got {folds}")
    wrong = sorted({k for k in only or () if not 0 <= k < folds})
    if wrong:
        raise TumorscopeError("--only", f"fold(s) {wrong} not in 0..{folds - 1}")
    return sorted(set(only)) if only is not None else list(range(folds))


def cross_validate(cfg: ExperimentConfig, folds: int, out: Path, data_root: str | None = None,
                   only: list[int] | None = None) -> CvResult:
    """Hold out each fold of ``folds`` in turn (``only``: these folds), train on the rest
    with the next fold for validation (pre-training on synthetic slices of those training
    patients first, when the config has a ``pretrain`` section), evaluate on the held-out
    fold; summarise every finished fold in ``out``. Runs are
    ``<output.root>/<run name>-cv<K>-f<k>``."""
    if cfg.init_weights:
        raise TumorscopeError("init_weights", "cross-validation would warm-start every fold "
                              f"from {cfg.init_weights}, which saw some folds' held-out "
                              "patients; unset it (init_weights=null) or pre-train per fold "
                              "(a pretrain section)")
    todo = folds_to_run(folds, only)
    held_out = fold_patients(cfg, folds, data_root)
    out = Path(out)
    claim_output(cfg, folds, out)
    for i, k in enumerate(todo, start=1):
        log.info("fold %d/%d: holding out fold %d (%d patients), validating on fold %d",
                 i, len(todo), k, len(held_out[k]), (k + 1) % folds)
        run_fold(cfg, folds, k, out, data_root)
    result = aggregate(out, folds)
    log.info("cross-validation: %d of %d folds finished; summary %s", len(result.results),
             folds, out / "summary.json")
    return result
