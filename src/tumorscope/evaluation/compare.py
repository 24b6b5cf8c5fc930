"""Compare models evaluated on the same held-out fold (``tumorscope compare``).

Reads the ``metrics.json`` files written by ``tumorscope evaluate`` and writes a Markdown
table, paired differences against the first model with patient-level bootstrap intervals
(the same patients are in every column, so the comparison is paired), and a bar chart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from tumorscope.checkpoint.store import read_card
from tumorscope.errors import TumorscopeError
from tumorscope.evaluation.result import EvaluationResult, PerImage, metrics_path, read_result
from tumorscope.io.writers import write_atomic
from tumorscope.metrics import bootstrap_ci

RESAMPLES = 1000
MISSING = "-"  # a cell with no number: not measured, or not applicable (a classifier's Dice)
DECODER_MODULES = ("decoder", "segmentation_head")  # a joint network's mask path (smp names)


@dataclass(frozen=True)
class Evaluation:
    """One model's ``metrics.json`` and how to call it."""

    name: str
    path: Path
    metrics: EvaluationResult

    @cached_property
    def images(self) -> dict[str, PerImage]:
        """Per-slice rows by slice id."""
        return {row.id: row for row in self.metrics.per_image}

    @property
    def segments(self) -> bool:
        """Whether the model segments (a classifier's ``segmentation`` is null)."""
        return self.metrics.segmentation is not None

    @cached_property
    def parameters(self) -> tuple[int, int] | None:
        """Parameters of the whole network in the model folder and, of those, its mask
        path's (decoder and segmentation head; 0 for a classifier); None when the folder is
        not found or does not load."""
        from tumorscope.checkpoint.store import load_checkpoint
        from tumorscope.models.capsule import count_parameters

        try:
            model, _ = load_checkpoint(self.metrics.checkpoint)
        except (TumorscopeError, OSError):
            return None
        decoder = sum(p.numel() for name, p in model.named_parameters()
                      if name.split(".")[0] in DECODER_MODULES)
        return count_parameters(model), decoder

    def describe(self) -> tuple[str, str]:
        """Architecture and training recipe from the model card ("" when it is not found)."""
        try:
            card = read_card(self.metrics.checkpoint)
        except (TumorscopeError, OSError):
            return "", ""
        model, size = card.model, card.preprocessing.get("input_size")
        encoder = "" if model.get("encoder") in (None, "none") else f" + {model['encoder']}"
        weights = model.get("encoder_weights")
        warm = (card.training_config or {}).get("init_weights")
        init = f" (warm start: {warm})" if warm else \
            f" ({weights} weights)" if weights not in (None, "none") else " (from scratch)"
        arch = model.get("arch", "unknown architecture")
        if card.task == "classify":  # a timm model by name, or the capsule network
            from tumorscope.models.capsule import timm_front_end

            front = timm_front_end(model)
            arch = model.get("name", "resnet50") if arch == "timm" else \
                f"{arch} network" + ("" if front is None else f" on {front}")
        architecture = f"{arch}{encoder}{init}, {size} px"
        if card.task == "brats":
            spacing = card.preprocessing.get("spacing")
            patch = "x".join(str(n) for n in model.get("patch_size", []))
            body = f"{model.get('arch')} + {model.get('encoder')}{init}" \
                if model.get("family") == "2d" else f"{model.get('arch')}, " \
                f"{model.get('filters')} filters"
            architecture = (f"{model.get('family')}: {body}, patches {patch}, "
                            f"{spacing or 'native'} mm")
        try:
            cfg = card.experiment()
        except TumorscopeError:
            return architecture, ""
        augment = getattr(cfg, "augment", None)
        recipe = (f"{cfg.optim.name} lr {cfg.optim.lr:g}, {cfg.scheduler.name}, "
                  f"{cfg.trainer.epochs} epochs, batch {cfg.trainer.batch_size}"
                  + (", EMA" if cfg.ema.enabled else "")
                  + (", augmentation" if augment is not None and augment.enabled else ""))
        return architecture, recipe


def load_evaluations(paths: Sequence[str | Path], names: Sequence[str] | None = None
                     ) -> list[Evaluation]:
    """Read and check the files: each a ``metrics.json``, all on the same slices."""
    if len(paths) < 2:
        raise TumorscopeError("compare", "give at least two metrics.json files")
    if names and len(names) != len(paths):
        raise TumorscopeError("--names", f"{len(names)} names for {len(paths)} files")
    evaluations = []
    for i, raw in enumerate(paths):
        path = metrics_path(raw)
        metrics = read_result(path)
        if not metrics.per_image and metrics.cases is None:
            raise TumorscopeError(path, "has no per-slice or per-case rows to pair")
        name = names[i] if names else (metrics.model_id or path.parent.name)
        evaluations.append(Evaluation(name, path, metrics))
    first = evaluations[0]
    for other in evaluations[1:]:
        for key in ("dataset", "fold"):
            mine, theirs = getattr(other.metrics, key), getattr(first.metrics, key)
            if mine != theirs:
                raise TumorscopeError(other.path, f"{key} {mine!r} differs "
                                      f"from {first.path}'s {theirs!r}")
        if other.images.keys() != first.images.keys() or _cases(other) != _cases(first):
            raise TumorscopeError(other.path, f"evaluated other slices or cases than "
                                  f"{first.path}")
    return evaluations


def _cases(evaluation: Evaluation) -> set[str]:
    cases = evaluation.metrics.cases
    return set(cases.per_case) if cases is not None else set()


def _paired_columns(a: Evaluation, b: Evaluation, value: Callable[[PerImage], float],
                    keep: Callable[[PerImage], bool] = lambda row: True
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 2)`` values of both models per slice (same order) and the slices' patients."""
    rows_b = b.images
    rows = [(value(r), value(rows_b[i]), r.patient) for i, r in a.images.items() if keep(r)]
    values = np.array([(x, y) for x, y, _ in rows], dtype=float).reshape(-1, 2)
    return values, np.array([p for _, _, p in rows])


def _mean_difference(pairs: np.ndarray) -> float:
    return float(np.mean(pairs[:, 1] - pairs[:, 0]))


def paired_differences(a: Evaluation, b: Evaluation) -> dict[str, tuple[float, float, float]]:
    """``b - a`` with a 95% patient-bootstrap interval: accuracy, tumour-slice Dice and
    (slices of volumes) per-patient volume Dice; Dice only when both models segment."""
    out = {}
    segmented = a.segments and b.segments
    columns = {"accuracy": _paired_columns(a, b, lambda r: float(r.true == r.predicted))}
    if segmented:
        columns["dice_mean_tumour"] = _paired_columns(a, b, lambda r: r.dice,
                                                      lambda r: r.has_tumour)
    for key, (values, patients) in columns.items():
        if len(values):
            out[key] = (_mean_difference(values),
                        *bootstrap_ci(values, _mean_difference, RESAMPLES, groups=patients))
    if a.metrics.cases is not None and b.metrics.cases is not None:
        ca, cb = a.metrics.cases.per_case, b.metrics.cases.per_case
        for region in ("WT", "TC", "ET"):
            values = np.array([(ca[c][f"{region}_dice"], cb[c][f"{region}_dice"]) for c in ca])
            out[f"{region}_dice"] = (_mean_difference(values),
                                     *bootstrap_ci(values, _mean_difference, RESAMPLES))
    if segmented and a.metrics.volumes is not None and b.metrics.volumes is not None:
        va, vb = a.metrics.volumes.per_patient, b.metrics.volumes.per_patient
        values = np.array([(va[p], vb[p]) for p in va], dtype=float)
        out["dice_per_patient"] = (_mean_difference(values),
                                   *bootstrap_ci(values, _mean_difference, RESAMPLES))
    return out


def _headline(m: EvaluationResult) -> dict[str, tuple[float, tuple[float, float] | None]]:
    """Metric -> (value, 95% CI or None), the numbers of one evaluation worth a column."""
    rows: dict[str, tuple[float, tuple[float, float] | None]] = {}
    if m.classification is not None:
        rows["accuracy"] = (m.classification.accuracy, m.ci("accuracy"))
        rows["macro-F1"] = (m.classification.macro_f1, m.ci("macro_f1"))
        for name, scores in m.classification.per_class.items():
            rows[f"F1 {name}"] = (scores.f1, None)
    if m.segmentation is not None:
        rows["Dice, tumour slices"] = (m.segmentation.dice_mean_tumour, m.ci("dice_mean_tumour"))
    if m.volumes is not None and m.segmentation is not None:
        rows["Dice per patient volume"] = (m.volumes.dice_mean_per_patient, m.volumes.dice_ci)
        rows["detection sensitivity"] = (m.volumes.detection.sensitivity, None)
        rows["detection specificity"] = (m.volumes.detection.specificity, None)
    if m.cases is not None:
        for metric, label in (("dice", "Dice"), ("hd95", "HD95 mm"),
                              ("lesion_dice", "lesion-wise Dice")):
            for region in ("WT", "TC", "ET"):
                s = m.cases.summary.get(f"{region}_{metric}")
                if s is not None:
                    rows[f"{label} {region}"] = (s.mean, (s.ci_low, s.ci_high))
        if m.cases.seconds_per_case is not None:
            rows["CPU seconds per case"] = (m.cases.seconds_per_case, None)
    return rows


def _cell(value: float, interval: tuple[float, float] | None) -> str:
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def _parameters_cell(evaluation: Evaluation) -> str:
    """``"6.55M"``, with a segmenting model's decoder share: ``"6.55M (2.10M decoder)"``."""
    counted = evaluation.parameters
    if counted is None:
        return MISSING
    total, decoder = counted
    return f"{total / 1e6:.2f}M" + (f" ({decoder / 1e6:.2f}M decoder)" if decoder else "")


def _timing_cell(m: EvaluationResult) -> str:
    """``"12.3 (onnx, 2 threads, batch 16)"``: what the number was measured with."""
    t = m.timing
    if t is None:
        return MISSING
    threads = f"{t.threads} thread{'s' * (t.threads != 1)}" if t.threads else "default threads"
    return f"{t.ms_per_slice:.1f} ({t.backend}, {threads}, batch {t.batch_size})"


def _row(label: str, cells: Sequence[str]) -> str:
    return f"| {label} | " + " | ".join(cells) + " |"


def _metric_names(headlines: Sequence[Mapping[str, object]]) -> list[str]:
    """Every model's metrics, in the order they first appear."""
    return list(dict.fromkeys(name for h in headlines for name in h))


DIFFERENCE_LABELS = {"accuracy": "accuracy", "dice_mean_tumour": "Dice, tumour slices",
                     "dice_per_patient": "Dice per patient volume", "WT_dice": "Dice WT",
                     "TC_dice": "Dice TC", "ET_dice": "Dice ET"}


def comparison_markdown(evaluations: Sequence[Evaluation], figure: str | None = None) -> str:
    """The comparison as Markdown (metrics table, paired differences, optional figure)."""
    first = evaluations[0].metrics
    split = first.split
    what = f"{split.patients} cases" if first.cases is not None else \
        f"{split.slices} slices from {split.patients} patients"
    lines = [f"Dataset `{first.dataset}`, fold {first.fold} ({first.fold_role} "
             f"fold): {what}, the same in every column. 95% intervals: patient-level "
             "bootstrap.", ""]
    lines += ["| model | " + " | ".join(e.name for e in evaluations) + " |",
              "| --- |" + " --- |" * len(evaluations)]
    described = [e.describe() for e in evaluations]
    for row, label in enumerate(("architecture", "training")):
        if any(d[row] for d in described):
            lines.append(_row(label, [d[row] for d in described]))
    lines.append(_row("parameters (whole network)", [_parameters_cell(e) for e in evaluations]))
    headlines = [_headline(e.metrics) for e in evaluations]
    for metric in _metric_names(headlines):
        lines.append(_row(metric, [_cell(*h[metric]) if metric in h else MISSING
                                   for h in headlines]))
    notes = ["Parameters: every parameter of the saved network, so a joint model's count "
             "includes its segmentation decoder and head (in brackets), which a classifier lacks."]
    if any(e.metrics.per_image for e in evaluations):
        lines.append(_row("CPU ms per slice", [_timing_cell(e.metrics) for e in evaluations]))
        notes.append("CPU ms per slice: the network's forward pass alone, mean over the fold "
                     "after one warm-up batch, as `tumorscope evaluate` measured it (back end, "
                     "threads and batch in brackets); compare it only between evaluations run "
                     "on the same machine.")
    notes.append(f"{MISSING}: not recorded, or not applicable (a classifier has no Dice).")
    lines += ["", " ".join(notes)]
    base = evaluations[0]
    diffs = {other.name: paired_differences(base, other) for other in evaluations[1:]}
    keys = [k for k in DIFFERENCE_LABELS if any(k in d for d in diffs.values())]
    lines += ["", f"Paired differences against **{base.name}** (other minus it; an interval "
              "that excludes 0 is a difference the held-out patients support):", "",
              "| model | " + " | ".join(DIFFERENCE_LABELS[k] for k in keys) + " |",
              "| --- |" + " --- |" * len(keys)]
    for name, diff in diffs.items():
        lines.append(_row(name, [f"{diff[k][0]:+.3f} [{diff[k][1]:+.3f}, {diff[k][2]:+.3f}]"
                                 if k in diff else MISSING for k in keys]))
    if not all(e.segments for e in evaluations) and any(e.metrics.per_image
                                                         for e in evaluations):
        lines += ["", "Dice differences are paired only between models that both segment."]
    if figure:
        lines += ["", f"![comparison]({figure})"]
    return "\n".join(lines) + "\n"


def write_comparison(paths: Sequence[str | Path], out: str | Path,
                     names: Sequence[str] | None = None, title: str | None = None,
                     command: str = "tumorscope compare") -> Path:
    """Write ``out`` (Markdown) and the bar chart beside it (``<out stem>.png``)."""
    from tumorscope.reporting.plots import comparison_png

    evaluations = load_evaluations(paths, names)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = out.with_suffix(".png")
    first = evaluations[0].metrics
    def scores(metrics: EvaluationResult) -> dict[str, tuple[float, tuple[float, float] | None]]:
        """The headline numbers on a 0-1 scale (distances and seconds stay in the table)."""
        return {k: v for k, v in _headline(metrics).items()
                if "HD95" not in k and "seconds" not in k}

    png = comparison_png([e.name for e in evaluations], [scores(e.metrics) for e in evaluations],
                         f"{first.dataset}, fold {first.fold} (95% intervals)")
    write_atomic(figure, lambda p: p.write_bytes(png))
    text = f"# {title or 'Model comparison'}\n\nGenerated by `{command}`.\n\n" + \
        comparison_markdown(evaluations, figure.name)
    return write_atomic(out, lambda p: p.write_text(text, encoding="utf-8"))
