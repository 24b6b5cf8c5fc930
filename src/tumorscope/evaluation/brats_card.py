"""Render a BraTS model's card (Markdown): what it takes, how it was split and trained, and
its held-out numbers the BraTS way (per region and per label, per case, with intervals)."""

from __future__ import annotations

from tumorscope.checkpoint.card import ModelCard
from tumorscope.errors import TumorscopeError
from tumorscope.evaluation.result import EvaluationResult

REGION_NAMES = {"WT": "whole tumour", "TC": "tumour core", "ET": "enhancing tumour"}
CAVEAT = ("Trained on the cases of a ten-case BraTS 2018 sample: far too few for benchmark "
          "claims (BraTS challenge models train on hundreds of cases). Treat every number "
          "below as a measurement on a handful of held-out cases, not as expected accuracy.")


def _row(summary: dict[str, object], key: str, digits: int = 3) -> str:
    s = summary.get(key)
    if s is None:
        return "n/a"
    mean, low, high = (getattr(s, k) for k in ("mean", "ci_low", "ci_high"))
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def render_brats_card(card: ModelCard, metrics: EvaluationResult, command: str) -> str:
    """Markdown for a BraTS model (``task: brats``) and its held-out ``metrics.json``."""
    cases, split = metrics.cases, card.data.split
    if cases is None or split.train is None or split.val is None:
        raise TumorscopeError(metrics.checkpoint, "a BraTS model card needs a BraTS evaluation "
                              "(metrics.json of tumorscope evaluate) and the training split")
    m, pre = card.model, card.preprocessing
    summary: dict[str, object] = dict(cases.summary)
    spacing = pre.get("spacing")
    network = (f"smp UNet, encoder `{m.get('encoder')}` ({m.get('encoder_weights') or 'random'}"
               " init), over axial slices" if m.get("family") == "2d" else
               f"MONAI {m.get('arch')} ({m.get('filters')} initial filters), sliding windows")
    region_rows = "\n".join(
        f"| {r} ({REGION_NAMES[r]}) | {_row(summary, f'{r}_dice')} | "
        f"{_row(summary, f'{r}_hd95', 1)} | {_row(summary, f'{r}_lesion_dice')} | "
        f"{_row(summary, f'{r}_sensitivity')} |" for r in REGION_NAMES)
    label_rows = "\n".join(
        f"| {lab} | " + " | ".join(_row(summary, f"{lab}_{k}") for k in
                                   ("precision", "recall", "iou", "dice")) + " |"
        for lab in ("NCR", "ED", "ET"))
    case_rows = "\n".join(
        f"| {c} | " + " | ".join(f"{v[f'{r}_dice']:.3f}" for r in REGION_NAMES) + " | " +
        " | ".join(f"{v[f'{r}_hd95']:.1f}" for r in REGION_NAMES) + " |"
        for c, v in cases.per_case.items())
    seconds = f"{cases.seconds_per_case:.1f}" if cases.seconds_per_case is not None else "n/a"
    return f"""# Model card: `{card.id}`

BraTS glioma segmenter: whole tumour, tumour core and enhancing tumour from a case's
{', '.join(pre.get('modalities', []))} volumes. **Research use only; not a medical device;
not for diagnosis.**

{CAVEAT}

## Model
- Network: {network}; patch {'x'.join(str(n) for n in m.get('patch_size', []))}; three
  sigmoid outputs (WT, TC, ET), nested into labels 1 (NCR), 2 (ED) and 3/4 (ET) on output.
- Input: the modalities above, stacked in that order (a missing one: {pre.get('missing_modality')});
  each z-scored inside the brain after clipping to its {pre.get('clip_percentiles')} percentiles,
  cropped to the brain, resampled to {spacing or 'the input'} mm; predictions are mapped back to
  the input grid (same shape, affine and header; labels in the input's convention).
- Weights: `model.safetensors` ({card.weights_dtype}), sha256 `{(card.weights_sha256 or '')[:16]}…`.

## Data and split
BraTS 2018 training cases with expert segmentations ({split.train.patients + split.val.patients
+ (split.test.patients if split.test else 0)} labelled cases; Bakas et al., Menze et al., TCIA
data usage policy), split by case into {split.folds} folds (seed {split.seed}): trained on
{split.train.patients} cases, model selected on fold {split.val_fold} ({split.val.patients}
cases; epoch {card.selected_epoch}), measured once on held-out fold {split.test_fold}.

## Results on held-out fold {metrics.fold} ({cases.per_case.__len__()} cases)
Mean over cases [95% case-level bootstrap interval]. BraTS rules: an empty region in both
reference and prediction scores Dice 1, HD95 0; in exactly one, Dice 0 and HD95 373.13 mm.

| region | Dice | HD95 mm | lesion-wise Dice | sensitivity |
| --- | --- | --- | --- | --- |
{region_rows}

| label | precision | recall | IoU | Dice |
| --- | --- | --- | --- | --- |
{label_rows}

| case | Dice WT | Dice TC | Dice ET | HD95 WT | HD95 TC | HD95 ET |
| --- | --- | --- | --- | --- | --- | --- |
{case_rows}

CPU seconds per case in that evaluation (preprocessing and inference): {seconds}.

## Known limits
- {CAVEAT.split(':')[0]}.
- Only BraTS-preprocessed input (skull-stripped, co-registered, 1 mm SRI24 space) was seen;
  raw clinical scans need the same preprocessing first.
- Paediatric tumours, metastases and post-operative cavities were not in the training data.

## Reproduce
```
{command}
```
"""
