"""``tumorscope results``: train/evaluate the baseline and ablations, write docs/results.md.

Every run is resumable and cached (a finished run is not trained again). Ablations are scored
on the validation fold, where settings are chosen; only the final comparison (default model,
the same recipe at the reduced budget, and the plain-loop baseline) is measured on the
held-out test fold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tumorscope.config import JointExperiment, load_config, require_task
from tumorscope.evaluation.compare import Evaluation, paired_differences
from tumorscope.evaluation.evaluate import evaluate
from tumorscope.evaluation.result import EvaluationResult, read_result
from tumorscope.experiments.baseline import train_plain
from tumorscope.training.run import latest_checkpoint, train

BUDGET = ["model.input_size=128", "trainer.epochs=4", "early_stopping.enabled=false"]
VARIANTS: dict[str, list[str]] = {
    "recipe (EMA, augmentation, instance norm, pretrained)": [],
    "without EMA": ["ema.enabled=false"],
    "global normalisation": ["model.normalization=global"],
    "without augmentation": ["augment.enabled=false"],
    "input 96 px": ["model.input_size=96"],
    "encoder from scratch (no ImageNet weights)": ["model.encoder_weights=none"],
    "bf16 mixed precision": ["trainer.precision=bf16-mixed"],
    "recipe, another seed (run-to-run variation)": ["seed=7"],
}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.split(" (")[0].lower()).strip("-")


def _config(base: Path, root: Path, name: str, overrides: list[str]) -> JointExperiment:
    cfg = load_config(base, [*BUDGET, *overrides, f"output.root={root}",
                             f"output.run_name={_slug(name)}"])
    return require_task(cfg, JointExperiment)


def _trained(cfg: JointExperiment) -> Path:
    model = cfg.run_dir / "model"
    if (model / "model.json").is_file():
        return model
    return train(cfg, resume=latest_checkpoint(cfg.run_dir) is not None)


def _evaluated(model: Path, fold: int, out: Path) -> EvaluationResult:
    cached = out / "metrics.json"
    if not cached.is_file():
        evaluate(model, fold, out, allow_train_fold=False)
    return read_result(cached)  # the same form whether fresh or cached


def run_suite(base: Path, default_model: Path, root: Path) -> dict[str, Any]:
    """Train and evaluate everything; returns the numbers the document shows."""
    ablations = {}
    for name, overrides in VARIANTS.items():
        cfg = _config(base, root, name, overrides)
        model = _trained(cfg)
        ablations[name] = _evaluated(model, int(cfg.data.val_fold or 1), cfg.run_dir / "eval-val")
    recipe_cfg = _config(base, root, next(iter(VARIANTS)), [])
    test_fold = recipe_cfg.data.test_fold
    base_cfg = _config(base, root, "plain-loop baseline", [])
    baseline = train_plain(base_cfg, base_cfg.run_dir)
    held_out = {
        "default model (full budget)": _evaluated(default_model, test_fold,
                                                  root / "default-eval-test"),
        "same recipe, reduced budget": _evaluated(recipe_cfg.run_dir / "model", test_fold,
                                                  recipe_cfg.run_dir / "eval-test"),
        "plain-loop baseline, reduced budget": _evaluated(baseline, test_fold,
                                                          base_cfg.run_dir / "eval-test"),
    }
    return {"ablations": ablations, "held_out": held_out, "test_fold": test_fold,
            "val_fold": recipe_cfg.data.val_fold, "budget": BUDGET}


def _row(name: str, m: EvaluationResult, ref: EvaluationResult | None = None) -> str:
    c, s = m.classification, m.segmentation
    assert c is not None and s is not None  # joint-task evaluations
    cells = [c.accuracy, c.macro_f1, s.dice_mean_tumour]
    cells += [c.per_class[k].f1 for k in ("meningioma", "glioma", "pituitary")]
    text = " | ".join(f"{v:.3f}" for v in cells)
    if ref is not None:
        diff = paired_differences(Evaluation("reference", Path(), ref), Evaluation(name, Path(), m))
        text += "".join(f" | {diff[k][0]:+.3f} [{diff[k][1]:+.3f}, {diff[k][2]:+.3f}]"
                        if k in diff else " | n/a" for k in ("accuracy", "dice_mean_tumour"))
    return f"| {name} | {text} |"


def write_results(numbers: dict[str, Any], out: Path, default_model: Path) -> Path:
    """Render docs/results.md and its figures (docs/results/*.png)."""
    from tumorscope.inference.predictor import Predictor
    from tumorscope.io import read_mask, read_scan
    from tumorscope.io.writers import write_atomic, write_png
    from tumorscope.reporting.overlay import overlay
    from tumorscope.reporting.plots import confusion_matrix_png, histogram_png

    figures = out.parent / "results"
    figures.mkdir(parents=True, exist_ok=True)
    held = numbers["held_out"]
    default = held["default model (full budget)"]
    cls = default.classification
    assert cls is not None
    (figures / "confusion-matrix.png").write_bytes(
        confusion_matrix_png(np.array(cls.confusion_matrix), cls.classes))
    dice = np.array([r.dice for r in default.per_image if r.has_tumour])
    (figures / "dice-histogram.png").write_bytes(
        histogram_png(dice, f"Dice per tumour slice, fold {numbers['test_fold']}", "Dice"))
    tumour = sorted((r for r in default.per_image if r.has_tumour), key=lambda r: r.dice)
    cases = {"good": tumour[-4:][::-1], "bad": tumour[:4]}
    predictor = Predictor.from_checkpoint(default_model, backend="torch")
    gallery = []
    for kind, rows in cases.items():
        for r in rows:
            scan = read_scan(r.image)
            pred = predictor.predict_scan(scan)
            true = read_mask(Path(r.image).parent.parent / "masks" / f"{r.id}.png")
            name = f"{kind}-{r.id}.png"
            write_png(figures / name, overlay(scan.array, pred.mask, true))
            gallery.append(f"| {kind} | ![{r.id}](results/{name}) | {r.id} (patient "
                           f"{r.patient}) | {r.true} | {r.predicted} | {r.dice:.2f} |")
    header = ("| | accuracy | macro-F1 | Dice (tumour slices) | F1 meningioma | F1 glioma | "
              "F1 pituitary |")
    rule = "| --- | --- | --- | --- | --- | --- | --- |"
    abl = numbers["ablations"]
    ref = next(iter(abl.values()))
    ci = default.confidence_intervals_95
    text = f"""# Results

Generated by `tumorscope results` (do not edit by hand). figshare T1-CE slices, patient-wise
folds from `meta.csv`: training folds 2-4, settings chosen on fold {numbers['val_fold']},
measured on held-out fold {numbers['test_fold']} ({default.split.slices} slices,
{default.split.patients} patients). Patients never cross folds.

## Held-out fold {numbers['test_fold']}

{header}
{rule}
""" + "\n".join(_row(k, v) for k, v in held.items()) + f"""

Default model 95% patient-bootstrap intervals: accuracy [{ci['accuracy'][0]:.3f},
{ci['accuracy'][1]:.3f}], macro-F1 [{ci['macro_f1'][0]:.3f}, {ci['macro_f1'][1]:.3f}],
Dice [{ci['dice_mean_tumour'][0]:.3f}, {ci['dice_mean_tumour'][1]:.3f}].

The *reduced budget* rows train for the same short schedule ({', '.join(numbers['budget'])}),
so the baseline and the recipe differ only in how they train. The baseline is the original
scripts' plain PyTorch loop: fixed-LR Adam, BCE + cross-entropy, no augmentation, no EMA, no
schedule, same architecture and ImageNet initialisation.

![confusion matrix](results/confusion-matrix.png) ![Dice histogram](results/dice-histogram.png)

## Ablations (validation fold {numbers['val_fold']}, reduced budget)

{header} Δ accuracy vs recipe | Δ Dice vs recipe |
{rule} --- | --- |
""" + "\n".join(_row(k, v, ref) for k, v in abl.items()) + """

Δ: this row minus the recipe on the same validation slices, with a 95% paired
patient-bootstrap interval; an interval that contains 0 is not a difference these patients
can show. The interval covers which patients were sampled, not training randomness: the
*another seed* row is the recipe trained again with a different seed, so its Δ is run-to-run
variation, and only a Δ clearly larger than that row's is evidence of an effect.

Mixed precision: these runs used a 2-core CPU, so the row is `bf16-mixed` (bfloat16
autocast); `16-mixed` (float16 with loss scaling) needs a GPU. Its training speed against fp32
on the same CPU is measured in [benchmarks](benchmarks.md) (`train_precision_cpu.py`).

## Good and bad cases (default model, held-out fold)

Outlines: yellow predicted, green ground truth.

| | overlay | slice | true | predicted | Dice |
| --- | --- | --- | --- | --- | --- |
""" + "\n".join(gallery) + "\n"
    write_atomic(out, lambda p: p.write_text(text, encoding="utf-8"))
    return out
