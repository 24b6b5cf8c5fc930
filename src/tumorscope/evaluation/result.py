"""``metrics.json``: the typed result of ``tumorscope evaluate``.

Files written by earlier versions load unchanged (fields added later are optional; the
per-patient Dice interval is computed, the same way, when a file lacks it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from tumorscope.errors import TumorscopeError
from tumorscope.metrics import per_patient_dice_ci


def _null_is_nan(value: Any) -> Any:
    """metrics.json stores an undefined value (e.g. Dice with no tumour) as null."""
    return float("nan") if value is None else value


Real = Annotated[float, BeforeValidator(_null_is_nan)]
Interval = tuple[Real, Real]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", ser_json_inf_nan="constants")


class EvaluatedSplit(_Open):
    """The evaluated fold: slices, patients and where the split came from."""

    test_fold: int
    slices: int
    patients: int
    source: str | None = None


class ClassScores(_Open):
    precision: Real
    recall: Real
    f1: Real
    support: int


class ClassificationResult(_Open):
    accuracy: Real
    macro_f1: Real
    per_class: dict[str, ClassScores]
    confusion_matrix: list[list[int]]
    classes: list[str]


class SegmentationResult(_Open):
    dice_mean: Real
    iou_mean: Real
    dice_mean_tumour: Real
    iou_mean_tumour: Real
    dice_pooled: Real
    iou_pooled: Real
    images: int
    tumour_images: int


class DetectionRates(_Open):
    sensitivity: Real
    specificity: Real
    tp: int
    tn: int
    fp: int
    fn: int


class SliceStackResult(_Open):
    """Per-patient volumes stacked from slices (LGG): volume Dice and slice detection."""

    dice_mean_per_patient: Real
    patients: int
    per_patient: dict[str, Real]
    detection: DetectionRates
    dice_mean_per_patient_ci: Interval | None = None
    files: dict[str, dict[str, str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fill_ci(self) -> SliceStackResult:
        if self.dice_mean_per_patient_ci is None:  # files written before the CI was stored
            self.dice_mean_per_patient_ci = per_patient_dice_ci(self.per_patient)
        return self

    @property
    def dice_ci(self) -> Interval:
        """95% bootstrap interval of the mean per-patient Dice."""
        assert self.dice_mean_per_patient_ci is not None  # filled by the validator
        return self.dice_mean_per_patient_ci


class PerImage(_Open):
    id: str
    patient: str
    image: str
    true: str
    predicted: str
    dice: Real
    has_tumour: bool
    tumour_pixels: int | None = None
    # 1 - p(no tumour), the detection score (models with a "no tumour" class): paired
    # comparisons of two models on the same slices
    tumour_score: float | None = None


class MetricSummary(_Open):
    """One metric over cases: mean with its case-level bootstrap interval, median, std."""

    mean: Real
    median: Real
    std: Real
    ci_low: Real
    ci_high: Real
    cases: int


class VolumeSegmentationResult(_Open):
    """BraTS-style results: per case (regions WT/TC/ET: Dice, HD95, sensitivity,
    specificity, lesion-wise Dice/HD95; labels NCR/ED/ET: precision, recall, IoU, Dice) and
    summaries over cases."""

    per_case: dict[str, dict[str, Real]]
    summary: dict[str, MetricSummary]
    seconds_per_case: Real | None = None
    files: dict[str, dict[str, str]] = Field(default_factory=dict)


class DetectionResult(_Open):
    """Tumour versus no tumour, from ``1 - p(no tumour)``, at the validation threshold."""

    auroc: Real
    auroc_ci: Interval | None = None
    threshold: Real
    sensitivity: Real
    specificity: Real
    false_alarm_rate: Real
    tumour_slices: int
    tumour_free_slices: int


class SourceResult(_Open):
    """One dataset of a mixed collection, on the evaluated fold."""

    slices: int
    patients: int
    accuracy: Real
    type_accuracy: Real | None = None  # on tumour slices, among the tumour types
    dice_mean_tumour: Real | None = None
    detection: DetectionResult | None = None
    ood_flag_rate: Real | None = None


class TrustResult(_Open):
    """Calibration (ECE with the fitted temperature and without), the tumour / no-tumour
    decision and the out-of-distribution flag rate, overall and per dataset."""

    temperature: Real
    ece_uncalibrated: Real
    ece_calibrated: Real
    reliability: list[dict[str, Real | None]] = Field(default_factory=list)
    reliability_uncalibrated: list[dict[str, Real | None]] = Field(default_factory=list)
    detection: DetectionResult | None = None
    ood_flag_rate: Real | None = None
    per_source: dict[str, SourceResult] = Field(default_factory=dict)


class UncertaintyResult(_Open):
    """Monte Carlo dropout on the evaluated fold: how well the mutual information of the
    sampled predictions separates wrong answers from right ones."""

    method: str = "mc-dropout"
    samples: int
    mean_mutual_information: float
    error_auroc: float | None = None  # mutual information as a score for "this one is wrong"
    error_auroc_confidence: float | None = None  # 1 - max probability, for comparison


class Timing(_Open):
    """Mean network time per slice during the evaluation: the back end's forward passes only
    (no reading, preprocessing or metrics), after one untimed warm-up batch. ``threads``:
    None when the back end chose (ONNX Runtime's default: one per physical core)."""

    ms_per_slice: Real
    batch_size: int
    threads: int | None = None
    backend: str
    slices: int | None = None


class EvaluationResult(_Open):
    """One model evaluated on one fold."""

    checkpoint: str
    model_id: str = ""
    fold: int
    fold_role: str | None = None
    dataset: str
    split: EvaluatedSplit
    classification: ClassificationResult | None = None
    segmentation: SegmentationResult | None = None
    confidence_intervals_95: dict[str, Interval] = Field(default_factory=dict)
    tta: bool = False
    backend: str | None = None
    per_image: list[PerImage] = Field(default_factory=list)
    volumes: SliceStackResult | None = None
    cases: VolumeSegmentationResult | None = None
    trust: TrustResult | None = None
    timing: Timing | None = None  # files written before it was recorded have none
    uncertainty: UncertaintyResult | None = None  # evaluated with --mc-dropout

    def ci(self, key: str) -> Interval | None:
        """The stored 95% interval of ``key`` (None when absent)."""
        return self.confidence_intervals_95.get(key)

    def save(self, path: Path) -> Path:
        """Write as JSON (atomically)."""
        from tumorscope.io.writers import write_json

        return write_json(path, self.model_dump(mode="json", exclude_unset=True))


def metrics_path(path: str | Path) -> Path:
    """``path`` itself, or the ``metrics.json`` inside it when it is a folder."""
    path = Path(path)
    return path / "metrics.json" if path.is_dir() else path


def read_result(path: str | Path) -> EvaluationResult:
    """Read a ``metrics.json`` (or the folder holding one); one-line errors."""
    path = metrics_path(path)
    if not path.is_file():
        raise TumorscopeError(path, "file not found (give metrics.json files written by "
                              "tumorscope evaluate, or their folders)")
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
        return EvaluationResult.model_validate(raw)
    except RecursionError:
        raise TumorscopeError(path, "nested too deeply to be a metrics.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TumorscopeError(path, f"not a readable JSON file ({err})") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise TumorscopeError(path, f"not a metrics.json written by tumorscope evaluate "
                              f"({where}: {first['msg']})") from None
