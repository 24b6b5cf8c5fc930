"""``tumorscope calibrate``: fit, on the model's validation fold only, what makes its answers
honest, and write the model again with it (a classifier gets the first two items, a joint
model all four):

- **temperature scaling** of the class logits (validation NLL), with the expected calibration
  error and reliability bins before and after;
- the **tumour / no-tumour operating point** (models with a "no tumour" class): tumour when
  ``1 - p(no tumour) >= t``, ``t`` maximising sensitivity + specificity on validation, or
  catching the most tumours within a false-alarm budget (``--false-alarms``);
- the **out-of-distribution reference**: for each of the encoder's two deepest stages
  (``OOD_STAGES``), class means and a shared (Ledoit-Wolf) covariance of the pooled features
  of training slices, and the mean and spread of the validation slices' distances; the
  score is the sum of the standardised distances. All are buffers of the network, so the
  score is an output of PyTorch and ONNX alike; the threshold is the 99th percentile of
  validation scores (1% of validation slices flagged);
- the **mask rule**: the mask probability threshold and the rescue for a found tumour whose
  mask is empty (``inference.joint.tumour_mask``), chosen to maximise mean Dice over the
  validation slices with a tumour, at the network's input size (a model with one mask per
  dataset: each slice scored on its own dataset's mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from torch import nn

from tumorscope.checkpoint.card import Calibration, ModelCard
from tumorscope.checkpoint.store import load_checkpoint, save_checkpoint
from tumorscope.data.prepare import prepare_split, spread
from tumorscope.data.records import Record
from tumorscope.data.slices import outline_indices, slice_batches
from tumorscope.errors import CheckpointError, ConfigError
from tumorscope.inference.joint import tumour_mask
from tumorscope.metrics import per_image_dice
from tumorscope.models.joint import JointWithDistance
from tumorscope.transforms.slice2d import SlicePreprocessing
from tumorscope.uncertainty import (
    YOUDEN_RULE,
    auroc,
    false_alarm_threshold,
    fit_temperature,
    nll,
    no_tumour_class,
    operating_point,
    quantiles,
    reliability,
    softmax,
    youden_threshold,
)

OOD_PERCENTILE = 99.0
OOD_STAGES = (-2, -1)  # the last two encoder stages (docs/trust.md: "Which features")
MASK_THRESHOLDS = (0.3, 0.4, 0.5, 0.6)
MASK_RESCUES: tuple[float | None, ...] = (None, 0.3, 0.5, 0.7)


class NetworkOutputs(NamedTuple):
    """Class logits ``(N, K)``, pooled features ``(N, D_s)`` of each distance stage and, for
    the slices
    picked by ``keep_masks`` whose reference mask is not empty at the input size, their
    index, mask probabilities ``(S, S)`` (float16) and reference mask ``(S, S)``."""

    logits: np.ndarray
    features: list[np.ndarray]
    masks: list[tuple[int, np.ndarray, np.ndarray]]


def run_network(net: JointWithDistance, pre: SlicePreprocessing, records: list[Record],
                what: str, batch_size: int = 32, keep_masks: Sequence[bool] | None = None,
                outlines: list[str] | None = None) -> NetworkOutputs:
    """The network's outputs on ``records`` (each read once); with ``outlines`` (one mask
    per dataset), each record's mask is its own dataset's."""
    logits, pooled, kept = [], [], []
    keep = list(keep_masks) if keep_masks is not None else [False] * len(records)
    channel = np.array(outline_indices(records, outlines))
    for start, (batch, references) in zip(range(0, len(records), batch_size),
                                          slice_batches(pre, records, what, batch_size),
                                          strict=True):
        with torch.inference_mode():
            mask_logits, lg, feats = net.with_stages(batch)
        logits.append(lg.float().numpy())
        pooled.append([f.float().numpy() for f in feats])
        if not any(keep[start:start + batch_size]):
            continue
        own = mask_logits[torch.arange(len(batch)),
                          torch.from_numpy(channel[start:start + len(batch)])]
        probs = torch.sigmoid(own.float()).numpy().astype(np.float16)
        for i, (prob, reference) in enumerate(zip(probs, references, strict=True),
                                              start=start):
            truth = reference.astype(bool) if keep[i] else None
            if truth is not None and truth.any():
                kept.append((i, prob, truth))
    return NetworkOutputs(np.concatenate(logits),
                          [np.concatenate(stage) for stage in zip(*pooled, strict=True)], kept)


def fit_mask_rule(probs: list[np.ndarray], truths: list[np.ndarray],
                  found: Sequence[bool] | None = None, rescues: Sequence[float | None]
                  = MASK_RESCUES) -> tuple[float, float | None, dict[str, float]]:
    """The (threshold, rescue) pair of the grid with the best mean Dice over slices with a
    tumour, scored as deployed: the rescue only where the tumour was ``found``, an empty mask
    where it was not (``found``: None for a model that always names a tumour); that Dice
    beside the plain 0.5 threshold's."""
    hits = list(found) if found is not None else [True] * len(probs)

    def mean_dice(threshold: float, rescue: float | None) -> float:
        preds = [tumour_mask(p.astype(np.float32), threshold, rescue) if hit
                 else np.zeros(p.shape, bool) for p, hit in zip(probs, hits, strict=True)]
        return float(per_image_dice(preds, truths).mean())

    scores = {(t, r): mean_dice(t, r) for t in MASK_THRESHOLDS
              for r in dict.fromkeys((None, *rescues))}
    best = max(scores, key=lambda k: (scores[k], k == (0.5, None)))
    return best[0], best[1], {"dice_at_0.5": scores[(0.5, None)], "dice": scores[best],
                              "slices": float(len(probs))}


def calibrate_masks(outputs: NetworkOutputs, found: np.ndarray | None
                    ) -> tuple[float | None, float | None, dict[str, float]]:
    """The mask rule fitted on the kept validation slices; ``found`` (per record) is the
    calibrated tumour decision, None for a model without a "no tumour" class (no rescue: it
    would outline every input)."""
    if not outputs.masks:
        return None, None, {}
    index, probs, truths = zip(*outputs.masks, strict=True)
    return fit_mask_rule(list(probs), list(truths),
                         None if found is None else [bool(found[i]) for i in index],
                         MASK_RESCUES if found is not None else (None,))


def fit_feature_reference(net: JointWithDistance, features: list[np.ndarray],
                          labels: np.ndarray) -> None:
    """Each stage's class means and shared precision (Ledoit-Wolf shrinkage) into
    ``net.ood``, from training features; standardisation reset (see :func:`fit_scaling`)."""
    from sklearn.covariance import LedoitWolf

    for stage, feats in zip(net.ood.stages, features, strict=True):
        k = cast(torch.Tensor, stage.means).shape[0]
        means = np.stack([feats[labels == c].mean(axis=0) if (labels == c).any()
                          else feats.mean(axis=0) for c in range(k)])
        precision = LedoitWolf().fit(feats - means[labels]).precision_
        cast(torch.Tensor, stage.means).copy_(torch.from_numpy(means.astype(np.float32)))
        cast(torch.Tensor, stage.precision).copy_(torch.from_numpy(
            precision.astype(np.float32)))
    cast(torch.Tensor, net.ood.centre).zero_()
    cast(torch.Tensor, net.ood.scale).fill_(1.0)


def fit_scaling(net: JointWithDistance, features: list[np.ndarray]) -> np.ndarray:
    """Standardise each stage's distance by its mean and spread over ``features``
    (validation); returns the combined scores of those slices."""
    with torch.inference_mode():
        distances = net.ood.per_stage([torch.from_numpy(f) for f in features]).numpy()
        cast(torch.Tensor, net.ood.centre).copy_(torch.from_numpy(distances.mean(axis=0)))
        cast(torch.Tensor, net.ood.scale).copy_(torch.from_numpy(
            np.maximum(distances.std(axis=0), 1e-6)))
        return net.ood([torch.from_numpy(f) for f in features]).numpy()


def fit_class_rule(logits: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                   false_alarms: float | None = None
                   ) -> tuple[dict[str, Any], np.ndarray | None]:
    """Temperature (validation NLL), reliability before and after it and, for a model with a
    "no tumour" class, the operating point (Youden's, or the most tumours caught with at most
    ``false_alarms`` of tumour-free slices called tumours); as :class:`Calibration` fields,
    with the tumour decision per slice as deployed (None without a "no tumour" class)."""
    temperature = fit_temperature(logits, labels)
    before = reliability(softmax(logits), labels)
    after = reliability(softmax(logits, temperature), labels)
    none = no_tumour_class(list(classes))
    fields: dict[str, Any] = {
        "temperature": temperature, "ece_before": before["ece"], "ece_after": after["ece"],
        "nll_before": nll(logits, labels), "nll_after": nll(logits, labels, temperature),
        "no_tumour_class": none, "reliability_before": before["bins"],
        "reliability_after": after["bins"]}
    if none is None:
        return fields, None
    column = list(classes).index(none)
    positive = labels != column
    tumour = 1.0 - softmax(logits, temperature)[:, column]
    if false_alarms is None:
        threshold, rule = youden_threshold(tumour, positive), YOUDEN_RULE
    else:
        threshold = false_alarm_threshold(tumour, positive, false_alarms)
        rule = f"the most tumours caught with at most {false_alarms:.1%} false alarms"
    fields |= {"tumour_threshold": threshold, "tumour_rule": rule,
               "detection_validation": {"auroc": auroc(tumour, positive),
                                        **operating_point(tumour, positive, threshold)}}
    return fields, tumour >= threshold


def classifier_logits(model: nn.Module, pre: SlicePreprocessing, records: list[Record],
                      what: str, batch_size: int = 32) -> np.ndarray:
    """A classify-task network's class logits ``(N, K)`` on ``records``."""
    logits = []
    for batch, _ in slice_batches(pre, records, what, batch_size):
        with torch.inference_mode():
            logits.append(model(batch)[0].float().numpy())
    return np.concatenate(logits)


def write_calibrated(out: str | Path, state: dict[str, torch.Tensor], card: ModelCard,
                     full_precision: tuple[str, ...] = ()) -> Path:
    """The calibrated model (weights + card) and its reliability diagram in ``out``."""
    from tumorscope.reporting.plots import reliability_png

    cal = card.calibration
    assert cal is not None and cal.ece_before is not None and cal.ece_after is not None
    out = Path(out)
    save_checkpoint(out, state, card, half=card.weights_dtype == "float16",
                    full_precision=full_precision)
    (out / "calibration.png").write_bytes(reliability_png(
        cal.reliability_before, cal.reliability_after, cal.ece_before, cal.ece_after))
    return out


def calibrate(checkpoint: str | Path, out: str | Path, data_root: str | None = None,
              max_train: int = 3000, batch_size: int = 32, false_alarms: float | None = None
              ) -> tuple[Path, ModelCard]:
    """Calibrate a slice model on its validation fold; writes it (weights + card) to ``out``.
    A classifier (task classify) gets the temperature and the "no tumour" operating point
    (Youden's, or within a ``false_alarms`` budget); a joint model also the
    out-of-distribution reference and the mask rule."""
    if false_alarms is not None and not 0 < false_alarms < 1:
        raise ConfigError("--false-alarms", f"a rate between 0 and 1 (e.g. 0.05), not "
                          f"{false_alarms}")
    model, card = load_checkpoint(checkpoint)
    if card.task not in ("joint", "classify"):
        raise CheckpointError(checkpoint, f"calibrate fits slice models (task joint or "
                              f"classify), not {card.task!r}")
    cfg = card.experiment(f"{checkpoint} (model card)")
    _, split = prepare_split(cfg, data_root)
    if not split.val:
        raise ConfigError("data.val_fold", "calibration needs the model's validation fold; "
                          "the card's config has none")
    pre = SlicePreprocessing.from_card(card.preprocessing)
    labels = np.array([r.label for r in split.val])
    fitted_on = (f"validation fold {split.val_fold} ({len(split.val)} slices, "
                 f"{len({r.patient for r in split.val})} patients)")
    if card.task == "classify":
        model.eval()
        logits = classifier_logits(model, pre, split.val, "validation fold", batch_size)
        fields, _ = fit_class_rule(logits, labels, card.classes, false_alarms)
        new_card = card.model_copy(update={"calibration": Calibration(fitted_on=fitted_on,
                                                                      **fields)})
        return write_calibrated(out, model.state_dict(), new_card), new_card
    net = JointWithDistance(model, len(card.classes), OOD_STAGES)  # a new reference
    net.eval()
    train = spread(split.train, max_train)
    train_feats = run_network(net, pre, train, "training features", batch_size).features
    fit_feature_reference(net, train_feats, np.array([r.label for r in train]))
    none = no_tumour_class(card.classes)
    positive = labels != (card.classes.index(none) if none is not None else -1)
    val = run_network(net, pre, split.val, "validation fold", batch_size, keep_masks=positive,
                      outlines=card.model.get("outlines"))
    distances = fit_scaling(net, val.features)
    fields, found = fit_class_rule(val.logits, labels, card.classes, false_alarms)
    mask_threshold, rescue, mask_dice = calibrate_masks(val, found)
    ood_threshold = float(np.percentile(distances, OOD_PERCENTILE))
    calibration = Calibration(
        fitted_on=f"{fitted_on}; feature reference from {len(train)} training slices",
        ood_threshold=ood_threshold, ood_reference=quantiles(distances),
        ood_validation_flag_rate=float((distances > ood_threshold).mean()),
        mask_threshold=mask_threshold, mask_rescue=rescue, mask_dice_validation=mask_dice,
        **fields)
    new_card = card.model_copy(update={"model": {**card.model, "ood_features": True,
                                                 "ood_stages": list(OOD_STAGES)},
                                       "calibration": calibration})
    return write_calibrated(out, net.state_dict(), new_card, ("ood.",)), new_card
