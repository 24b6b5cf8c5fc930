"""Render the Markdown model card of a classify-task model (no mask head): architecture and
parameter count, training stages, data and split, held-out metrics with 95% intervals and,
for a calibrated classifier, its temperature and "no tumour" operating point."""

from __future__ import annotations

from typing import Any

from tumorscope.checkpoint.card import ModelCard
from tumorscope.errors import TumorscopeError
from tumorscope.evaluation.card_markdown import (
    DATASETS,
    UNSEEN,
    UNSEEN_OTHER,
    _ci,
    class_tables,
    trust_section,
)
from tumorscope.evaluation.result import EvaluationResult
from tumorscope.transforms.framing import DESCRIPTIONS
from tumorscope.transforms.slice2d import SlicePreprocessing

CLASSIFIER_DATA = {
    "brats-axial-flair": "BraTS cases with segmentations: axial FLAIR slices through "
                         "the brain, \"tumour\" when the slice holds at least 1% tumour, \"no "
                         "tumour\" when it holds none. Folds by case (patient), seed {seed}",
}


def _architecture(model: dict[str, Any], parameters: int | None) -> str:
    count = f" ({parameters / 1e6:.2f}M parameters)" if parameters else ""
    if model.get("arch") == "capsule":
        from tumorscope.models.capsule import timm_front_end

        recon = ", reconstruction decoder" if model.get("reconstruction") else ""
        timm = timm_front_end(model)
        front = "its own conv front end" if timm is None else \
            f"front end `{timm}` cut at stride 16 (from `{model.get('encoder_weights')}`)"
        return (f"capsule network{count}: {front}, primary capsules, class capsules "
                f"with {model.get('routing_iterations', 3)} routing iterations, margin "
                f"loss{recon}")
    return (f"timm `{model.get('name')}`{count}, body initialised from "
            f"`{model.get('encoder_weights')}`")


def _stages(config: dict[str, Any]) -> str:
    stages = config.get("stages") or []
    if not stages:
        return f"One stage of {config['trainer']['epochs']} epochs."
    optim = config["optim"]
    rows = [f"{i + 1}. {s['epochs']} epoch(s) at {s.get('input_size') or 'the final size'} px"
            f"{', body frozen' if s.get('freeze_body') else ''}"
            f"{', LR x' + str(s['lr_mult']) if s.get('lr_mult', 1) != 1 else ''}"
            for i, s in enumerate(stages)]
    return ("\n".join(rows) + f"\n\nBody learning rates: {optim.get('layer_groups', 1)} group(s) "
            f"by depth, from lr x {optim.get('encoder_lr_mult', 1)} at the stem to lr "
            f"({optim['lr']}) at the head.")


def parameter_count(card: ModelCard) -> int:
    """Parameters of the card's network (built without weights)."""
    from tumorscope.models.classifier import classifier_from_config

    net = classifier_from_config(card.model, len(card.classes), load_pretrained=False)
    return sum(p.numel() for p in net.parameters())


def render_classifier_card(card: ModelCard, metrics: EvaluationResult, command: str) -> str:
    """Markdown for a classifier: what it is, how it was trained, what it scored."""
    split, cls = card.data.split, metrics.classification
    if cls is None or split.train is None or split.val is None:
        raise TumorscopeError(metrics.checkpoint, "a model card needs classification metrics "
                              "and a card with the training split")
    train = card.experiment()
    pre = SlicePreprocessing.from_card(card.preprocessing)
    dataset = card.data.dataset or "unknown dataset"
    data_text = CLASSIFIER_DATA.get(dataset) or DATASETS.get(dataset, ("", dataset))[1]
    held = metrics.split
    trained_on = sorted(set(range(train.data.folds)) - {split.test_fold, split.val_fold})
    val = card.validation
    return f"""# Model card: `{card.id}`

Slice classifier ({', '.join(card.classes)}) for 2D brain MRI. No tumour outline.
**Research use only; not a medical device; not for diagnosis.**

## Model
- Architecture: {_architecture(card.model, parameter_count(card))}.
- Input: {pre.in_channels} channel, {DESCRIPTIONS[pre.framing]},
  resized to {pre.input_size}x{pre.input_size};
  intensity {pre.intensity}, then `{pre.normalization}` normalisation.
- Weights: `model.safetensors` ({card.weights_dtype}), sha256 `{(card.weights_sha256 or '')[:16]}…`.

## Training
{_stages(train.model_dump(mode="json"))}

## Data and split
{data_text.format(seed=split.seed)}: trained on folds {trained_on}
({split.train.slices} slices, {split.train.patients} patients), model selected on
fold {split.val_fold} ({split.val.slices} slices, {split.val.patients} patients;
epoch {card.selected_epoch}; validation accuracy {val.get('acc', float('nan')):.3f},
macro-F1 {val.get('macro_f1', float('nan')):.3f}), measured once on held-out fold
{split.test_fold}.

## Results on held-out fold {metrics.fold} ({held.slices} slices, {held.patients} patients)
95% intervals: patient-level bootstrap.

| metric | value | 95% CI |
| --- | --- | --- |
| accuracy | {cls.accuracy:.3f} | {_ci(metrics, 'accuracy')} |
| macro-F1 | {cls.macro_f1:.3f} | {_ci(metrics, 'macro_f1')} |

{class_tables(cls)}
{trust_section(card, metrics)}
## Known limits
- {UNSEEN.get(dataset, UNSEEN_OTHER)}
- It names a class for every image; a classifier without a "no tumour" class assumes a tumour
  is present.

## Reproduce
```
{command}
```
"""
