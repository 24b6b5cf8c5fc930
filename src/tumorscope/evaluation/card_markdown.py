"""Render a model card (Markdown) from the JSON card and a held-out ``metrics.json``."""

from __future__ import annotations

from typing import Any

from tumorscope.checkpoint.card import ModelCard
from tumorscope.evaluation.result import ClassificationResult, EvaluationResult
from tumorscope.transforms.framing import DESCRIPTIONS
from tumorscope.transforms.slice2d import SlicePreprocessing
from tumorscope.uncertainty import YOUDEN_RULE

DATASETS = {
    "figshare": ("Joint tumour-type classifier and tumour segmenter for 2D T1-weighted "
                 "contrast-enhanced MRI slices.",
                 "figshare brain tumour dataset (Cheng et al. 2015/2016, CC BY 4.0): 3064 "
                 "slices, 233 patients. Patient-wise 5-fold split shipped with the data "
                 "(`meta.csv` `fold`)"),
    "lgg": ("FLAIR abnormality segmenter for lower-grade glioma slices (pre-contrast, FLAIR, "
            "post-contrast); its class head detects slices with abnormality.",
            "LGG segmentation dataset (Buda et al. 2019; TCGA-LGG via TCIA): 3929 slices, 110 "
            "patients. Patient-wise 5-fold split computed with the seed below, stratified by "
            "whether the patient has tumour slices (seed {seed})"),
    "mri-mix": ("Tumour type (meningioma, glioma, pituitary) or \"no tumour\", and the tumour "
                "outline, for one 2D brain MRI slice of a common sequence (T1, T1-CE, T2, "
                "FLAIR) in any plane, with calibrated probabilities and a flag for images "
                "unlike its training data.",
                "figshare (Cheng et al.; T1-CE, 3064 slices, 233 patients, shipped folds), LGG "
                "(Buda et al.; one of pre-contrast T1, FLAIR, post-contrast T1 per slice, 3929 "
                "slices, 110 patients; tumour-free slices as \"no tumour\", abnormal ones as "
                "glioma) and BraTS 2018 (t1, t1ce, t2, flair in three planes from 10 cases; "
                "slices away from the tumour as \"no tumour\"). Folds by patient: figshare's "
                "shipped ones, LGG and BraTS computed with seed {seed} (the same folds as the "
                "LGG and BraTS models)"),
}


UNSEEN = {
    "figshare": "Other sequences (T1 without contrast, T2, FLAIR), other scanners or paediatric "
                "data were never seen in training.",
    "lgg": "Only pre-contrast T1, FLAIR and post-contrast T1 of lower-grade gliomas from TCGA "
           "were seen: other sequences (T2), high-grade tumours, other scanners or paediatric "
           "data were not.",
    "mri-mix": "Healthy volunteers' scans were never seen (tumour-free slices come from tumour "
               "patients), nor diffusion, perfusion, CT, paediatric data or tumour types other "
               "than the three. Meningiomas and pituitary tumours were seen only as figshare's "
               "T1-CE slices with the skull: under another contrast, or skull stripped, more "
               "than half of the held-out meningiomas were called gliomas (docs/trust.md).",
}


UNSEEN_OTHER = "Other sequences, scanners or paediatric data may not have been seen in training."


def _masks_line(outlines: list[str] | None) -> str:
    """What the mask output is: one mask, or one per outline definition."""
    if not outlines:
        return "a tumour mask at the input's size."
    return (f"one tumour mask per outline definition, at the input's size: {', '.join(outlines)} "
            f"(each learned from that dataset's annotations; `{outlines[0]}` is the one predict, "
            "the API and the page draw, `predict --outline NAME` draws another). Dice on each "
            "dataset is measured on its own outline.")


def _volumes(metrics: EvaluationResult) -> str:
    v = metrics.volumes
    if v is None:
        return ""
    det = v.detection
    lo, hi = v.dice_ci
    return (f"\n**Per patient volume** (slices stacked, as Buda et al. report): mean Dice "
            f"**{v.dice_mean_per_patient:.3f}** (95% CI [{lo:.3f}, {hi:.3f}], bootstrap over "
            f"patients) over {v.patients} patients. Slice "
            f"detection (mask non-empty): sensitivity {det.sensitivity:.3f}, specificity "
            f"{det.specificity:.3f}.\n")


def class_tables(cls: ClassificationResult) -> str:
    """Per-class precision / recall / F1 and the confusion matrix, as Markdown tables."""
    rows = "\n".join(f"| {name} | {v.precision:.3f} | {v.recall:.3f} | {v.f1:.3f} | "
                     f"{v.support} |" for name, v in cls.per_class.items())
    cm_rows = "\n".join(f"| **{cls.classes[i]}** | " + " | ".join(str(n) for n in row) + " |"
                        for i, row in enumerate(cls.confusion_matrix))
    return f"""| class | precision | recall | F1 | slices |
| --- | --- | --- | --- | --- |
{rows}

Confusion matrix (rows true, columns predicted):

| | {' | '.join(cls.classes)} |
| --- | {' | '.join('---' for _ in cls.classes)} |
{cm_rows}"""


def _ci(metrics: EvaluationResult, key: str) -> str:
    ci = metrics.ci(key)
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def _dice_breakdown(metrics: EvaluationResult, classes: list[str]) -> str:
    import numpy as np

    rows = [r for r in metrics.per_image if r.has_tumour and r.tumour_pixels is not None]
    if not rows:
        return "(per-image results not available)"
    sizes = np.array([r.tumour_pixels for r in rows])
    dice = np.array([r.dice for r in rows])
    lo, hi = np.quantile(sizes, [1 / 3, 2 / 3])
    groups = {f"small (< {lo:.0f} px)": sizes < lo,
              f"medium ({lo:.0f}-{hi:.0f} px)": (sizes >= lo) & (sizes < hi),
              f"large (>= {hi:.0f} px)": sizes >= hi}
    for name in classes:
        groups[name] = np.array([r.true == name for r in rows])
    means = {k: float(dice[v].mean()) for k, v in groups.items() if v.any()}
    lines = ["| slices | n | mean Dice |", "| --- | --- | --- |"]
    lines += [f"| {k} | {int(groups[k].sum())} | {m:.3f} |" for k, m in means.items()]
    worst = min(means, key=means.get)  # type: ignore[arg-type]
    lines.append(f"\nWeakest group on this fold: **{worst}** (mean Dice {means[worst]:.3f}).")
    return "\n".join(lines)


def trust_section(card: ModelCard, metrics: EvaluationResult) -> str:
    """The calibration, no-tumour and out-of-distribution section (calibrated models)."""
    cal, trust = card.calibration, metrics.trust
    if cal is None or trust is None:
        return ""
    lines = [f"\n## Calibration, \"no tumour\" and unfamiliar images\nFitted by `tumorscope "
             f"calibrate` on {cal.fitted_on}; never on the test fold.\n",
             f"- Temperature {cal.temperature:.3f}: expected calibration error (15 bins) on the "
             f"held-out fold {trust.ece_uncalibrated:.3f} without, {trust.ece_calibrated:.3f} "
             f"with it (validation: {cal.ece_before:.3f} -> {cal.ece_after:.3f}); reliability "
             "diagram: `calibration.png`."]
    if cal.tumour_threshold is not None and (d := trust.detection) is not None:
        ci = f" [{d.auroc_ci[0]:.3f}, {d.auroc_ci[1]:.3f}]" if d.auroc_ci else ""
        lines.append(f"- \"No tumour\" when 1 - p({cal.no_tumour_class}) < "
                     f"{cal.tumour_threshold:.3f} (threshold "
                     f"{cal.tumour_rule or YOUDEN_RULE} on "
                     f"validation). Held-out fold: AUROC {d.auroc:.3f}{ci}, "
                     f"{d.sensitivity:.1%} of {d.tumour_slices} tumour slices caught, "
                     f"{d.false_alarm_rate:.1%} false alarms on {d.tumour_free_slices} "
                     "tumour-free slices.")
    if cal.mask_threshold is not None and (v := cal.mask_dice_validation):
        rescue = (f"; a found tumour with no pixel above it is outlined where the mask "
                  f"probability exceeds {cal.mask_rescue:g} x the slice's peak"
                  if cal.mask_rescue is not None else "; no rescue")
        lines.append(f"- Mask: pixels above {cal.mask_threshold:g}{rescue} (chosen on "
                     f"validation Dice over {int(v['slices'])} tumour slices at the input size: "
                     f"{v['dice_at_0.5']:.3f} with 0.5 alone, {v['dice']:.3f} with this rule).")
    if cal.ood_threshold is not None:
        stages = list(card.model.get("ood_stages") or [-1])
        distance = (f"the pooled encoder features are further from every training class than "
                    f"{cal.ood_threshold:.0f} (squared Mahalanobis" if stages == [-1] else
                    f"the feature distance exceeds {cal.ood_threshold:.1f} (for encoder "
                    f"stages {stages} (-1: the deepest), the squared Mahalanobis distance of "
                    "each one's pooled features to the nearest training class, standardised "
                    "on validation; summed")
        lines.append(f"- Unfamiliar images: flagged when {distance}; the validation fold's "
                     "99th percentile) or the pixels fail the input checks (colour, bright "
                     "background, no dark background, nearly blank). Held-out slices flagged: "
                     f"{(trust.ood_flag_rate or 0):.1%}.")
    if trust.per_source:
        lines += ["\n| dataset | slices | patients | accuracy | type accuracy | Dice (tumour) "
                  "| detection AUROC | caught | false alarms | flagged unfamiliar |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, r in trust.per_source.items():
            det = r.detection
            lines.append(" | ".join([
                f"| {name}", str(r.slices), str(r.patients), f"{r.accuracy:.3f}",
                _num(r.type_accuracy), _num(r.dice_mean_tumour),
                _num(det.auroc if det else None),
                f"{det.sensitivity:.1%}" if det else "-",
                f"{det.false_alarm_rate:.1%}" if det else "-",
                f"{(r.ood_flag_rate or 0):.1%} |"]))
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _initialised(model: dict[str, Any], init_weights: str | None) -> str:
    """Where the network's starting weights came from, in words."""
    if init_weights:
        return f"every weight warm-started from `{init_weights}`"
    weights = model.get("encoder_weights")
    return f"encoder initialised from `{weights}`" if weights else "trained from random weights"


def render_model_card(card: ModelCard, metrics: EvaluationResult, command: str) -> str:
    """Markdown for a joint-task model: data, split, preprocessing, metrics with 95% CIs,
    measured failure modes, intended use."""
    split = card.data.split
    cls, seg = metrics.classification, metrics.segmentation
    if cls is None or seg is None or split.train is None or split.val is None:
        from tumorscope.errors import TumorscopeError

        raise TumorscopeError(metrics.checkpoint, "a model card needs classification and "
                              "segmentation metrics and a card with the training split")
    m, train = card.model, card.experiment()
    pre = SlicePreprocessing.from_card(card.preprocessing)
    val = {k: float("nan") if card.validation.get(k) is None else card.validation[k]
           for k in ("acc", "macro_f1", "dice")}
    held = metrics.split
    dice_ci = _ci(metrics, "dice_mean_tumour")
    dataset = card.data.dataset or "unknown dataset"
    summary, data_text = DATASETS.get(dataset, ("A tumorscope model.", dataset))
    trained_on = sorted(set(range(train.data.folds)) - {split.test_fold, split.val_fold})
    return f"""# Model card: `{card.id}`

{summary} **Research use only; not a medical device; not for diagnosis.**

## Model
- Architecture: {m['arch']} with encoder `{m['encoder']}` ({_initialised(m, train.init_weights)}),
  scSE attention: {m['attention']}, classification head on the encoder.
- Input: {pre.in_channels} channel, {DESCRIPTIONS[pre.framing]},
  resized to {pre.input_size}x{pre.input_size};
  intensity {pre.intensity}, then `{pre.normalization}` normalisation.
- Outputs: probabilities for {', '.join(card.classes)}; {_masks_line(m.get('outlines'))}
- Weights: `model.safetensors` ({card.weights_dtype}), sha256 `{(card.weights_sha256 or '')[:16]}…`.

## Data and split
{data_text.format(seed=split.seed)}: trained on folds
{trained_on}
({split.train.slices} slices, {split.train.patients} patients), model selected on
fold {split.val_fold} ({split.val.slices} slices, {split.val.patients} patients;
epoch {card.selected_epoch}), measured once on held-out fold {split.test_fold}.

## Results on held-out fold {metrics.fold} ({held.slices} slices, {held.patients} patients)
95% intervals: patient-level bootstrap.

| metric | value | 95% CI |
| --- | --- | --- |
| accuracy | {cls.accuracy:.3f} | {_ci(metrics, 'accuracy')} |
| macro-F1 | {cls.macro_f1:.3f} | {_ci(metrics, 'macro_f1')} |
| Dice, mean over tumour slices | {seg.dice_mean_tumour:.3f} | {dice_ci} |
| Dice, pooled | {seg.dice_pooled:.3f} | |
| IoU, mean over tumour slices | {seg.iou_mean_tumour:.3f} | |
{_volumes(metrics)}
{class_tables(cls)}

Validation fold at the selected epoch: accuracy {val['acc']:.3f},
macro-F1 {val['macro_f1']:.3f}, Dice {val['dice']:.3f}.
{trust_section(card, metrics)}
## Known failure modes
Measured on the held-out fold: mean Dice by true tumour size (terciles of tumour pixels at
the original resolution) and by class.

{_dice_breakdown(metrics, cls.classes)}

- Tumours with indistinct, infiltrative borders (typical of gliomas) are the hardest to
  outline; small tumours lose detail at {pre.input_size} px input. The table measures both.
- Multi-focal tumours: one mask is predicted, scattered lesions may be partly missed.
- Low-contrast or non-enhancing tumours and slices far from the tumour centre.
- {UNSEEN.get(dataset, UNSEEN_OTHER)}

## Reproduce
```
{command}
```
"""
