"""The model card: a typed JSON record stored beside the weights (``model.json``).

It says what the model is (task, classes, network), how its input is made (the task's
``preprocessing`` section), what data trained it and how it was split, and which
experiment config produced it. Cards written by earlier versions still load: every field
added later is optional and unknown fields are kept.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tumorscope.config import ExperimentConfig, build_config
from tumorscope.data.records import DatasetIndex
from tumorscope.data.splits import Split

CARD_FORMAT = "tumorscope-model/1"
INTENDED_USE = "Research only. Not a medical device; not for diagnosis."


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class SplitPart(_Open):
    """Slices, patients and slices per label in one part of the split."""

    slices: int
    patients: int
    labels: dict[str, int] = Field(default_factory=dict)

    @field_validator("labels", mode="before")
    @classmethod
    def _text_keys(cls, value: Any) -> Any:
        """Label indices as JSON object keys (strings)."""
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


class CardSplit(_Open):
    """The patient-level split the model was trained under."""

    test_fold: int | None = None
    val_fold: int | None = None
    train: SplitPart | None = None
    val: SplitPart | None = None
    test: SplitPart | None = None
    source: str | None = None
    folds: int | None = None
    seed: int | None = None


class CardData(_Open):
    """Which dataset, where it was, and the split."""

    dataset: str | None = None
    root: str | None = None
    split: CardSplit = CardSplit()


class Calibration(_Open):
    """What ``tumorscope calibrate`` fitted on the validation fold: the softmax temperature,
    the tumour / no-tumour operating point and the out-of-distribution reference."""

    fitted_on: str
    temperature: float = 1.0
    ece_before: float | None = None
    ece_after: float | None = None
    nll_before: float | None = None
    nll_after: float | None = None
    no_tumour_class: str | None = None
    tumour_threshold: float | None = None  # tumour when 1 - p(no tumour) >= this
    tumour_rule: str | None = None  # how the threshold was chosen (None: Youden, older cards)
    detection_validation: dict[str, float] = Field(default_factory=dict)
    ood_threshold: float | None = None  # feature distance above which input is unlike training
    ood_reference: list[float] = Field(default_factory=list)  # quantiles of validation distances
    ood_validation_flag_rate: float | None = None
    mask_threshold: float | None = None  # mask probability threshold chosen on validation
    mask_rescue: float | None = None  # found tumour, empty mask: pixels above this x the peak
    mask_dice_validation: dict[str, float] = Field(default_factory=dict)  # before / after
    reliability_before: list[dict[str, float | None]] = Field(default_factory=list)
    reliability_after: list[dict[str, float | None]] = Field(default_factory=list)


class ModelCard(_Open):
    """``model.json``. ``model`` is the task's network section (what its builder takes) and
    ``preprocessing`` the task's input section (e.g. transforms.slice2d.SlicePreprocessing)."""

    format: Literal["tumorscope-model/1"] = "tumorscope-model/1"
    name: str = "model"
    task: str
    classes: list[str]
    model: dict[str, Any]
    preprocessing: dict[str, Any]
    data: CardData = CardData()
    training_config: dict[str, Any] | None = None
    created: str | None = None
    tumorscope_version: str | None = None
    intended_use: str = INTENDED_USE
    selected_from: str | None = None
    selected_epoch: int | None = None
    validation: dict[str, float | None] = Field(default_factory=dict)  # null: not logged
    recipe: str | None = None
    weights_sha256: str | None = None
    model_id: str | None = None
    weights_dtype: str = "float32"
    calibration: Calibration | None = None

    @property
    def id(self) -> str:
        """``model_id`` (name + weight hash), else the name."""
        return self.model_id or self.name

    def experiment(self, origin: str = "model card") -> ExperimentConfig:
        """The experiment config that trained this model (a one-line error if absent)."""
        from tumorscope.errors import CheckpointError

        if self.training_config is None:
            raise CheckpointError(origin, "the card has no training_config")
        return build_config(self.training_config, origin)

    def summary(self) -> dict[str, Any]:
        """The card as JSON without the (long) training config (fields as written)."""
        return self.model_dump(mode="json", exclude={"training_config"}, exclude_unset=True)


def build_card(cfg: ExperimentConfig, index: DatasetIndex, split: Split,
               preprocessing: dict[str, Any], **extra: Any) -> ModelCard:
    """The card of a model trained by ``cfg`` on ``index`` split as ``split``."""
    from tumorscope import __version__

    model_section = getattr(cfg, "model", None)
    return ModelCard(
        name=cfg.name, task=cfg.task, classes=index.classes,
        model=model_section.model_dump(mode="json") if model_section is not None else {},
        preprocessing=preprocessing,
        data=CardData(dataset=cfg.data.dataset, root=cfg.data.root, split=CardSplit.model_validate(
            {**split.describe(), "source": str(index.info["split"]) if index.info.get("split")
             else None, "folds": cfg.data.folds, "seed": cfg.seed})),
        training_config=cfg.model_dump(mode="json"),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        tumorscope_version=__version__, intended_use=INTENDED_USE, **extra)
