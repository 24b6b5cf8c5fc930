"""``tumorscope demo``: the README's main job, on any machine.

Every shipped model predicts the example slices of its dataset that are bundled with the
package (``tumorscope/examples``: patients of the held-out test fold); ``data`` switches to
held-out slices of the real figshare dataset. Each record gets the true class and the Dice
of the predicted mask against the true one. With no shipped model and the data at hand, a
small model is trained first.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tumorscope.errors import TumorscopeError
from tumorscope.locations import REPO, shipped_checkpoints

EXAMPLES = Path(__file__).resolve().parent / "examples"


@dataclass(frozen=True)
class Example:
    """A slice with its ground truth."""

    image: Path
    mask: Path
    dataset: str
    true_class: str
    patient: str


# which bundled examples a model of each dataset is shown
EXAMPLE_DATASETS = {"mri-mix": {"figshare", "lgg", "brats-slices"}}
OUTLINE_OF = {"brats-slices": "brats"}  # an example's dataset -> the outline it is drawn in


def _as_class_of(example: Example, classes: list[str]) -> Example:
    """An LGG "tumour" is a glioma for a model that names tumour types."""
    if example.true_class == "tumour" and "tumour" not in classes and "glioma" in classes:
        return Example(example.image, example.mask, example.dataset, "glioma", example.patient)
    return example


def data_root() -> Path:
    """``$TUMORSCOPE_DATA`` or ``../shared/data`` beside the checkout."""
    return Path(os.environ.get("TUMORSCOPE_DATA") or REPO.parent / "shared" / "data")


def bundled_examples() -> list[Example]:
    """The example slices shipped inside the package (see ``examples/README.md``)."""
    manifest = json.loads((EXAMPLES / "examples.json").read_text(encoding="utf-8"))
    return [Example(EXAMPLES / e["file"], EXAMPLES / e["mask"], e["dataset"], e["true_class"],
                    e["patient"]) for e in manifest["examples"]]


def held_out_examples(figshare: Path, fold: int, per_class: int = 1) -> list[Example]:
    """First ``per_class`` slices of each class in ``fold`` of the figshare dataset."""
    meta = figshare / "meta.csv"
    if not meta.is_file():
        raise TumorscopeError(figshare, "figshare data not found (meta.csv missing); run "
                              "`tumorscope demo` without --data to use the bundled examples")
    picked: dict[str, list[Example]] = {}
    with meta.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if int(row["fold"]) != fold:
                continue
            bucket = picked.setdefault(row["label_name"], [])
            if len(bucket) < per_class:
                bucket.append(Example(figshare / "images" / f"{row['id']}.jpg",
                                      figshare / "masks" / f"{row['id']}.png", "figshare",
                                      row["label_name"], row["pid"]))
    return [item for items in picked.values() for item in items]


def _scored(record: dict[str, Any], example: Example) -> dict[str, Any]:
    """The record with the true class and the Dice of its mask against the truth (None for
    a classifier, which draws no mask)."""
    from tumorscope.io import read_mask
    from tumorscope.metrics import dice_iou

    scored = {**record, "true_class": example.true_class, "patient": example.patient,
              "dice": None}
    if "mask" in record["outputs"]:
        predicted = read_mask(record["outputs"]["mask"])
        true = read_mask(example.mask, expected_shape=predicted.shape)
        scored["dice"] = dice_iou(predicted, true)[0]
    return scored


def run_demo(out: Path, checkpoint: Path | None = None, data: Path | None = None
             ) -> list[dict[str, Any]]:
    """Predict the examples with every shipped model (or ``checkpoint``); returns records."""
    from tumorscope.checkpoint.store import read_card
    from tumorscope.inference.outputs import output_stem
    from tumorscope.inference.predictor import Predictor
    from tumorscope.io.writers import write_json

    models = [checkpoint] if checkpoint else shipped_checkpoints()
    if not models:
        if data is None:
            raise TumorscopeError("--checkpoint", "no shipped model under models/ and no "
                                  "--checkpoint; pass --data DIR to train a small one first")
        models = [_quick_model(out, data)]
    records: list[dict[str, Any]] = []
    for model in models:
        card = read_card(model)
        held_out = card.data.split.test_fold
        shown = EXAMPLE_DATASETS.get(str(card.data.dataset), {str(card.data.dataset)})
        examples = [_as_class_of(e, card.classes) for e in bundled_examples()
                    if e.dataset in shown]
        if data is not None and "figshare" in shown and held_out is not None:
            examples = held_out_examples(data / "figshare", held_out) + [
                e for e in examples if e.dataset != "figshare"]
        if not examples:
            continue
        if card.task == "brats":
            records += _cases(Predictor.from_checkpoint(model), examples, out)
            continue
        here = out / Path(model).name if len(models) > 1 else out  # one folder per model
        outlines = list(card.model.get("outlines") or [])
        for record, example in zip(_predict_examples(model, examples, here, outlines),
                                   examples, strict=True):
            scored = _scored(record, example)
            write_json(here / f"{output_stem(example.image)}.json", scored)  # adds the truth
            records.append(scored)
    if not records:
        raise TumorscopeError(out, "no example matches the model's dataset; pass --data DIR")
    return records


def _predict_examples(model: Path, examples: list[Example], out: Path,
                      outlines: list[str]) -> list[dict[str, Any]]:
    """Predict the examples (records in their order); a model with one mask per outline
    definition draws each example's mask in its own dataset's outline, as evaluation does."""
    from tumorscope.inference.outputs import predict_files
    from tumorscope.inference.predictor import Predictor

    groups: dict[str | None, list[int]] = {}
    for i, e in enumerate(examples):
        name = OUTLINE_OF.get(e.dataset, e.dataset)
        groups.setdefault(name if name in outlines else None, []).append(i)
    records: dict[int, dict[str, Any]] = {}
    for outline, members in groups.items():
        predictor = Predictor.from_checkpoint(model, outline=outline)
        found = predict_files(predictor, [examples[i].image for i in members], out)
        records.update(zip(members, found, strict=True))
    return [records[i] for i in range(len(examples))]


def _cases(predictor: Any, examples: list[Example], out: Path) -> list[dict[str, Any]]:
    """BraTS examples: whole cases predicted, each region scored against the expert labels."""
    import nibabel as nib
    import numpy as np

    from tumorscope.brats_metrics import region_scores
    from tumorscope.inference.case_outputs import predict_cases
    from tumorscope.io.brats import map_labels, read_case
    from tumorscope.io.writers import write_json

    records = []
    for record, example in zip(predict_cases(predictor, [e.image for e in examples], out),
                                examples, strict=True):
        case = read_case(example.image)
        assert case.labels is not None  # bundled cases carry their segmentation
        seg = out / record["outputs"]["segmentation"]  # only the written labels: no re-read
        image: Any = nib.load(str(seg))
        predicted = map_labels(np.asarray(image.dataobj), case.naming.labels, seg,
                               case.naming)
        scores = region_scores(predicted, case.labels, case.spacing)
        scored = {**record, "true_class": example.true_class, "patient": example.patient,
                  "dice": {r: s["dice"] for r, s in scores.items()}}
        write_json(out / f"{case.case_id}.json", scored)
        records.append(scored)
    return records


def _quick_model(out: Path, data: Path) -> Path:
    """No shipped model: train a small one for a few minutes on the CPU, then evaluate it."""
    from tumorscope.config import load_config
    from tumorscope.evaluation.evaluate import evaluate
    from tumorscope.training.run import train

    print("No shipped model found: training a small demo model (a few minutes on CPU)...")
    cfg = load_config(REPO / "configs" / "figshare" / "joint-lite0.yaml", [
        f"data.root={data / 'figshare'}", "model.input_size=128", "trainer.epochs=2",
        "data.limit_per_split=256", f"output.root={out / 'runs'}", "output.run_name=demo",
        "early_stopping.enabled=false"])
    if (cfg.run_dir / "model" / "model.json").is_file():
        return cfg.run_dir / "model"
    model = train(cfg)
    evaluate(model, cfg.data.test_fold, out / "evaluation")
    print(f"evaluation report: {out / 'evaluation' / 'report.html'}")
    return model
