"""Experiment configuration: one YAML file per experiment, validated, overridable from the CLI.

An experiment is a union discriminated by its ``task`` key: the sections every task shares
(data, optim, scheduler, trainer, ema, early_stopping, output) live in
:class:`ExperimentConfig`; each task type subclasses it with its own ``model``, ``loss`` and
``augment`` sections and registers the subclass with :func:`register_task_config`. Nothing
here imports the rest of tumorscope, so every layer may read configs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tumorscope.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """Which dataset, where it lives and how it is split (always by patient)."""

    dataset: str = Field("figshare", min_length=1,
                         description="a registered dataset (tumorscope.data.registry)")
    root: str = "${TUMORSCOPE_DATA:-../shared/data}/figshare"
    folds: int = Field(5, ge=2)
    test_fold: int = Field(0, ge=0)
    val_fold: int | None = Field(1, ge=0)
    fold_source: Literal["dataset", "computed"] = "dataset"
    cache: bool = True
    num_workers: int = Field(0, ge=0)
    limit_per_split: int | None = Field(None, ge=1)
    sources: list[str] | None = Field(None, description="keep only these datasets of a mixed "
                                      "collection (leave-one-dataset-out runs)")
    pack: str | None = Field(None, description="a slice pack made by `tumorscope pack`: train "
                             "from its slices instead of reading the dataset (a GPU machine "
                             "without the data); evaluation always reads the dataset")
    source_weights: dict[str, float] | None = Field(
        None, description="draw training slices of a mixed collection with these relative "
        "weights per dataset (others 1), with replacement, epochs keeping their length; "
        "e.g. {figshare: 2} shows figshare's slices twice as often")

    @field_validator("source_weights")
    @classmethod
    def _positive_weights(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None and any(w <= 0 for w in value.values()):
            raise ValueError("source_weights must be positive")
        return value

    @model_validator(mode="after")
    def _folds_differ(self) -> DataConfig:
        if self.val_fold is not None and self.val_fold == self.test_fold:
            raise ValueError("val_fold must differ from test_fold (never tune on the test fold)")
        if self.test_fold >= self.folds or (self.val_fold or 0) >= self.folds:
            raise ValueError(f"fold indices must be below folds={self.folds}")
        return self


# how a slice model's input is framed (transforms/framing.py; "stretch" only in old cards)
SliceFraming = Literal["square around the head", "around the head"]


class JointModelConfig(_Strict):
    """The joint network: UNet decoder for the mask, classification head on the encoder."""

    arch: Literal["unet", "unetplusplus", "fpn", "plain-unet"] = "unet"
    encoder: str = "efficientnet-b0"
    encoder_weights: str | None = "imagenet"
    attention: Literal["scse", "none"] = "scse"
    in_channels: int = Field(1, ge=1)
    input_size: int = Field(256, ge=32)
    normalization: Literal["instance", "global"] = "instance"
    framing: SliceFraming = "square around the head"
    dropout: float = Field(0.2, ge=0, lt=1)
    outlines: list[str] | None = Field(
        None, description="one mask output per dataset of a mixed collection, each learning "
        "that dataset's outline definition (figshare: the tumour on T1-CE; lgg: the FLAIR "
        "abnormality; brats: the whole tumour with oedema); the first is the outline "
        "the API and the page show and predict draws unless --outline names another. None: "
        "one shared mask")

    @model_validator(mode="after")
    def _size_multiple(self) -> JointModelConfig:
        if self.input_size % 32:
            raise ValueError(f"input_size must be a multiple of 32, got {self.input_size}")
        if self.outlines is not None:
            _distinct_datasets(self.outlines, "outlines names two or more distinct datasets "
                               "(or is null)")
        return self


def _distinct_datasets(names: list[str], problem: str) -> None:
    """A list naming datasets of a mixed collection: two or more, none twice."""
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(problem)


class SourceAdversaryConfig(_Strict):
    """A training-only head that guesses each slice's dataset from the encoder's deepest
    features and the slice's class, through a gradient reversal (tasks/adversary.py)."""

    weight: float = Field(gt=0, description="weight of the dataset-guessing loss; the "
                          "reversal ramps from 0 to this over training (Ganin et al. 2016)")
    sources: list[str] = Field(description="the datasets of a mixed collection it tells apart")

    @model_validator(mode="after")
    def _two_sources(self) -> SourceAdversaryConfig:
        _distinct_datasets(self.sources, "sources names two or more distinct datasets")
        return self


class JointLossConfig(_Strict):
    """Segmentation and classification losses and their weights."""

    segmentation: Literal["dice+bce", "dice+focal", "dice", "bce", "focal"] = "dice+bce"
    segmentation_weight: float = Field(1.0, ge=0)
    classification_weight: float = Field(1.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    source_adversary: SourceAdversaryConfig | None = Field(
        None, description="make slices of one class look alike across datasets, so the "
        "dataset a slice resembles stops being a cue for its class; None: off")
    type_sources: list[str] | None = Field(
        None, description="the datasets whose tumour slices teach the tumour type; a tumour "
        "slice of another dataset teaches only 'a tumour' (the summed probability of the "
        "tumour classes), so its sequence or look cannot come to stand for its type; needs a "
        "'no tumour' class. None: every dataset")

    @model_validator(mode="after")
    def _type_sources(self) -> JointLossConfig:
        names = self.type_sources
        if names is not None and (not names or len(set(names)) != len(names)):
            raise ValueError("type_sources names one or more distinct datasets (or is null)")
        return self


class OptimConfig(_Strict):
    """Optimiser; the encoder may learn slower (differential learning rates)."""

    name: Literal["adamw", "adam", "adamax", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    encoder_lr_mult: float = Field(1.0, gt=0)
    layer_groups: int = Field(1, ge=1, description="classify task: the body split by depth "
                              "into this many groups, learning rates geometric from "
                              "lr*encoder_lr_mult (stem) to lr (head), fastai's discriminative "
                              "rates (other tasks: one body group)")
    freeze_encoder_epochs: int = Field(0, ge=0)
    train_only: list[str] | None = Field(
        None, min_length=1, description="train only the model's top-level modules with these "
        "names (e.g. [decoder, segmentation_head]); the rest stays as loaded, BatchNorm "
        "statistics included, so a refined mask leaves the classification untouched")


class SchedulerConfig(_Strict):
    """Learning-rate schedule."""

    name: Literal["cosine", "plateau", "none"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    patience: int = Field(3, ge=1)
    factor: float = Field(0.5, gt=0, lt=1)
    min_lr: float = Field(1e-6, ge=0)


class Augment2DConfig(_Strict):
    """2D augmentation (albumentations), applied to image and mask together."""

    enabled: bool = True
    hflip: float = Field(0.5, ge=0, le=1)
    vflip: float = Field(0.0, ge=0, le=1)
    rotate: float = Field(15.0, ge=0, le=180)
    scale: float = Field(0.1, ge=0, lt=1)
    shift: float = Field(0.05, ge=0, lt=1)
    brightness_contrast: float = Field(0.2, ge=0, le=1)
    gamma: float = Field(0.0, ge=0, le=1)
    elastic: float = Field(0.0, ge=0, le=1)
    # probability of a further shrink to 55-85% of the size (a wider field of view, a head
    # small in its frame), beyond ``scale``'s symmetric range
    zoom_out: float = Field(0.0, ge=0, le=1)
    # scanner and acquisition artefacts (probabilities; TorchIO for the MRI-physics ones)
    bias_field: float = Field(0.0, ge=0, le=1)
    ghosting: float = Field(0.0, ge=0, le=1)
    motion: float = Field(0.0, ge=0, le=1)
    spike: float = Field(0.0, ge=0, le=1)
    blur: float = Field(0.0, ge=0, le=1)
    noise: float = Field(0.0, ge=0, le=1)
    downscale: float = Field(0.0, ge=0, le=1)
    jpeg: float = Field(0.0, ge=0, le=1)
    # domain randomisation: a random, possibly non-monotonic intensity curve (0 stays 0), so
    # the contrast of one sequence does not identify a class (e.g. T1 vs T2/FLAIR)
    intensity_remap: float = Field(0.0, ge=0, le=1)
    # skull stripping (a classical 2D brain mask), so that the presence of skull and scalp,
    # which differs between collections, does not identify a class
    skull_strip: float = Field(0.0, ge=0, le=1)


class TrainerConfig(_Strict):
    """Lightning trainer settings."""

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(16, ge=1)
    precision: Literal["32", "16-mixed", "bf16-mixed", "64"] = "32"
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | str | list[int] = 1
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1)
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    checkpoint_every_n_steps: int = Field(50, ge=1)
    gradient_clip: float | None = Field(1.0, gt=0)
    accumulate_grad_batches: int = Field(1, ge=1)
    deterministic: bool = False
    log_every_n_steps: int = Field(10, ge=1)
    seed: int | None = Field(None, description="training randomness (new layers' initial "
                             "weights, batch order, augmentation draws); None: the "
                             "experiment's seed. Unlike `seed`, it never changes the split")

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        """``trainer.precision=32`` on the command line arrives as the number 32."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class EmaConfig(_Strict):
    """Exponential moving average of weights, used for validation and export."""

    enabled: bool = True
    decay: float = Field(0.998, gt=0, lt=1)
    warmup: bool = True


class EarlyStoppingConfig(_Strict):
    """Stop when the monitored validation metric stops improving."""

    enabled: bool = True
    monitor: str = "val/score"
    mode: Literal["max", "min"] = "max"
    patience: int = Field(8, ge=1)


class OutputConfig(_Strict):
    """Where runs are written."""

    root: str = "runs"
    run_name: str | None = None


class ExperimentConfig(_Strict):
    """What every experiment has, whatever its task; task types subclass it."""

    name: str = "experiment"
    seed: int = 42
    task: str = "joint"
    init_weights: str | None = Field(None, description="warm start from a tumorscope model "
                                     "folder or a state-dict file: tensors whose name and shape "
                                     "match are loaded (not on --resume)")
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    trainer: TrainerConfig = TrainerConfig()
    ema: EmaConfig = EmaConfig()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    output: OutputConfig = OutputConfig()

    @property
    def training_seed(self) -> int:
        """The seed of training randomness: ``trainer.seed``, else ``seed`` (which also draws
        computed folds)."""
        return self.trainer.seed if self.trainer.seed is not None else self.seed

    @property
    def run_name(self) -> str:
        return self.output.run_name or self.name

    @property
    def run_dir(self) -> Path:
        return Path(self.output.root) / self.run_name


_TASK_CONFIGS: dict[str, type[ExperimentConfig]] = {}
C = TypeVar("C", bound=type[ExperimentConfig])


def register_task_config(cls: C) -> C:
    """Class decorator: make ``cls`` the schema of experiments whose ``task`` is its default."""
    name = cls.model_fields["task"].default  # type: ignore[call-overload]
    if not isinstance(name, str) or name in _TASK_CONFIGS:
        raise ValueError(f"task config {cls.__name__}: task name {name!r} missing or taken")
    _TASK_CONFIGS[name] = cls
    return cls


def task_names() -> list[str]:
    """Every registered task type."""
    return sorted(_TASK_CONFIGS)


@register_task_config
class JointExperiment(ExperimentConfig):
    """The joint 2D task: one network classifies a slice and segments its tumour."""

    task: Literal["joint"] = "joint"
    model: JointModelConfig = JointModelConfig()
    loss: JointLossConfig = JointLossConfig()
    augment: Augment2DConfig = Augment2DConfig()


class ClassifierModelConfig(_Strict):
    """A slice classifier: any timm model by name (``arch: timm``), or the capsule network
    (``arch: capsule``, models/capsule.py). No mask head."""

    arch: Literal["timm", "capsule"] = "timm"
    name: str = Field("resnet50", min_length=1, description="timm model name (arch: timm)")
    encoder_weights: str | None = Field(None, description="'imagenet' (needs internet), a "
                                        "local weights file, 'efficientnet-lite0-package' "
                                        "(name tf_efficientnet_lite0) or none")
    in_channels: int = Field(1, ge=1)
    input_size: int = Field(256, ge=16, description="the size the exported model takes")
    normalization: Literal["instance", "global"] = "instance"
    framing: SliceFraming = "square around the head"
    dropout: float = Field(0.2, ge=0, lt=1)
    # capsule network (arch: capsule); defaults give 3.64M parameters for 3 classes
    front_end: str = Field("convs", min_length=1, description="the capsule net's conv front "
                           "end: 'convs' (its own), or a timm model name cut at stride 16 "
                           "(weights from encoder_weights)")
    routing_iterations: int = Field(3, ge=1)
    reconstruction: bool = False

    @model_validator(mode="after")
    def _capsule_settings_need_a_capsule(self) -> ClassifierModelConfig:
        if self.arch == "capsule":
            return self
        if self.front_end != "convs":
            raise ValueError(f"model.front_end={self.front_end!r} replaces a capsule network's "
                             f"convs; with arch {self.arch!r} set model.name instead")
        if self.routing_iterations != 3 or self.reconstruction:
            raise ValueError("model.routing_iterations and model.reconstruction are capsule "
                             f"network settings; arch {self.arch!r} would ignore them")
        return self


class ClassifyLossConfig(_Strict):
    """Cross-entropy for timm models; margin loss (+ reconstruction) for the capsule net."""

    label_smoothing: float = Field(0.0, ge=0, lt=1)
    reconstruction_weight: float = Field(0.0005, ge=0)


class StageConfig(_Strict):
    """One stage of transfer learning / progressive resizing: ``epochs`` at ``input_size``
    with the body frozen or not; the learning rate restarts at ``lr_mult * optim.lr``."""

    epochs: int = Field(ge=1)
    input_size: int | None = Field(None, ge=16)
    freeze_body: bool = False
    lr_mult: float = Field(1.0, gt=0)


class PretrainConfig(_Strict):
    """Pre-training on pix2pix-synthesised slices before the real training, the capsule
    project's recipe, done per run (so per cross-validation fold): the generator learns from
    this run's training patients only, ``synthetic`` slices are drawn from it, and a short
    run on them gives the real run its starting weights (experiments/pretrain.py)."""

    synthetic: int = Field(7000, ge=1, description="synthetic slices to draw")
    gan_steps: int = Field(5000, ge=1, description="pix2pix training steps")
    gan_size: int = Field(128, ge=32, description="synthetic slice size, a multiple of 16")
    gan_batch_size: int = Field(8, ge=1)
    gan_width: int = Field(32, ge=1, description="channels of the generator's first layer")
    epochs: int = Field(2, ge=1, description="pre-training epochs on the synthetic slices")

    @field_validator("gan_size")
    @classmethod
    def _multiple_of_16(cls, value: int) -> int:
        if value % 16:
            raise ValueError(f"{value} px: the pix2pix size must be a multiple of 16")
        return value


@register_task_config
class ClassifyExperiment(ExperimentConfig):
    """The classify task: a slice classifier (no mask), trained in stages (frozen body, then
    unfrozen with per-layer-group learning rates; progressive resizing)."""

    task: Literal["classify"] = "classify"
    model: ClassifierModelConfig = ClassifierModelConfig()
    loss: ClassifyLossConfig = ClassifyLossConfig()
    augment: Augment2DConfig = Augment2DConfig()
    stages: list[StageConfig] = Field(default_factory=list, description="empty: one stage of "
                                      "trainer.epochs at model.input_size")
    pretrain: PretrainConfig | None = Field(None, description="pre-train on pix2pix slices "
                                            "drawn from this run's training patients first")

    @model_validator(mode="after")
    def _stages_fit(self) -> ClassifyExperiment:
        if self.data.pack and self.pretrain is not None:
            raise ValueError("data.pack: pix2pix pre-training reads the dataset itself; pack "
                             "a run without a pretrain section")
        if self.data.pack and any(s.input_size is not None for s in self.stages):
            raise ValueError("data.pack: a pack holds one input size; progressive resizing "
                             "(stages with input_size) reads the dataset itself")
        if not self.stages:
            return self
        last = self.stages[-1].input_size
        if last is not None and last != self.model.input_size:
            raise ValueError(f"the last stage's input_size ({last}) must be model.input_size "
                             f"({self.model.input_size}): that is the size the model is "
                             "exported at")
        if self.optim.freeze_encoder_epochs:
            raise ValueError("with stages, freeze the body per stage (freeze_body: true), not "
                             "with optim.freeze_encoder_epochs")
        total = sum(s.epochs for s in self.stages)
        if self.trainer.epochs != total:
            self.trainer = self.trainer.model_copy(update={"epochs": total})
        return self


Modality = Literal["t1", "t1ce", "t2", "flair"]
BRATS_MODALITIES: tuple[Modality, ...] = ("t1", "t1ce", "t2", "flair")


class BratsModelConfig(_Strict):
    """A BraTS segmenter: a 2D slice model (smp, the original project's way) or a 3D model
    (MONAI SegResNet or UNet). Outputs are the nested regions WT, TC, ET (sigmoid each)."""

    family: Literal["2d", "3d"] = "3d"
    arch: Literal["unet", "segresnet"] = "segresnet"
    encoder: str = "resnet34"  # 2D only (any smp / timm encoder)
    encoder_weights: str | None = None  # 2D only
    filters: int = Field(16, ge=4)  # 3D: initial filters
    modalities: list[Modality] = Field(default_factory=lambda: list(BRATS_MODALITIES),
                                       min_length=1)
    patch_size: list[int] = Field(default_factory=lambda: [64, 64, 64], min_length=2,
                                  max_length=3)
    dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _patch_fits_family(self) -> BratsModelConfig:
        want = 2 if self.family == "2d" else 3
        if len(self.patch_size) != want:
            raise ValueError(f"patch_size needs {want} sizes for a {self.family} model")
        if any(n % 16 for n in self.patch_size):
            raise ValueError(f"patch_size entries must be multiples of 16, got {self.patch_size}")
        if self.family == "2d" and self.arch != "unet":
            raise ValueError("2d models are smp UNets (arch: unet)")
        if self.family == "3d" and self.arch == "segresnet" and self.filters % 8:
            raise ValueError("segresnet filters must be a multiple of 8 (group normalisation)")
        return self


class BratsPrepConfig(_Strict):
    """Preprocessing (stored in the model card) and the training cache."""

    spacing: list[float] | None = Field(default_factory=lambda: [2.0, 2.0, 2.0])
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    margin: int = Field(2, ge=0)
    missing_modality: Literal["error", "zeros"] = "error"
    label_map: dict[int, int] | None = None  # file label -> 1 NCR, 2 ED, 3 ET
    cache_dir: str | None = None  # default: <output.root>/cache/<name>
    patch_stride: int = Field(32, ge=1)  # 2D: overlapping patches of each axial slice
    keep_background: float = Field(0.05, ge=0, le=1)  # 2D: share of tumour-free patches kept
    foreground_ratio: float = Field(0.67, ge=0, le=1)  # 3D: crops centred on tumour
    samples_per_case: int = Field(8, ge=1)  # 3D: random crops per case per epoch


class BratsLossConfig(_Strict):
    """Region losses on sigmoid outputs."""

    name: Literal["focal+dice", "dice+bce", "focal", "dice"] = "focal+dice"
    focal_gamma: float = Field(2.0, ge=0)


class Augment3DConfig(_Strict):
    """TorchIO augmentation, applied to modalities and labels together (probabilities)."""

    enabled: bool = True
    flip: float = Field(0.5, ge=0, le=1)
    affine: float = Field(0.3, ge=0, le=1)
    anisotropy: float = Field(0.0, ge=0, le=1)
    elastic: float = Field(0.0, ge=0, le=1)
    noise: float = Field(0.2, ge=0, le=1)
    bias_field: float = Field(0.2, ge=0, le=1)
    gamma: float = Field(0.2, ge=0, le=1)
    motion: float = Field(0.0, ge=0, le=1)
    ghosting: float = Field(0.0, ge=0, le=1)


@register_task_config
class BratsExperiment(ExperimentConfig):
    """BraTS multimodal segmentation (WT/TC/ET), split by case."""

    task: Literal["brats"] = "brats"
    data: DataConfig = DataConfig(dataset="brats", root="${TUMORSCOPE_DATA:-../shared/data}/brats",
                                  fold_source="computed")
    model: BratsModelConfig = BratsModelConfig()
    prep: BratsPrepConfig = BratsPrepConfig()
    loss: BratsLossConfig = BratsLossConfig()
    augment: Augment3DConfig = Augment3DConfig()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig(monitor="val/dice")

    @model_validator(mode="after")
    def _one_source(self) -> BratsExperiment:
        if self.data.source_weights:
            raise ValueError("data.source_weights: BraTS cases come from one dataset")
        if self.data.pack:
            raise ValueError("data.pack: packs hold 2D slices; a BraTS run trains from its "
                             "HDF5 cache (tumorscope prepare), which travels as prep.cache_dir")
        return self

    @property
    def cache_dir(self) -> Path:
        return Path(self.prep.cache_dir or Path(self.output.root) / "cache" / self.name)


E = TypeVar("E", bound=ExperimentConfig)


def require_task(cfg: ExperimentConfig, schema: type[E]) -> E:
    """``cfg`` as ``schema`` (a task's experiment class), or a one-line error naming the task."""
    if not isinstance(cfg, schema):
        wanted = schema.model_fields["task"].default
        raise ConfigError("task", f"this needs a {wanted!r} experiment, the config is "
                          f"{cfg.task!r}")
    return cfg


def experiment_class(tree: dict[str, Any], origin: str = "config") -> type[ExperimentConfig]:
    """The schema for a config tree, chosen by its ``task`` key (default: joint)."""
    task = tree.get("task", "joint")
    if not isinstance(task, str) or task not in _TASK_CONFIGS:
        raise ConfigError(origin, f"task: unknown task {task!r}; known: {task_names()}")
    return _TASK_CONFIGS[task]


_ENV = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand_env(text: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in a config string."""
    def sub(match: re.Match[str]) -> str:
        value = os.environ.get(match.group(1))
        if value:
            return value
        if match.group(2) is not None:
            return match.group(2)
        raise ConfigError(match.group(0), f"environment variable {match.group(1)} is not set")
    return _ENV.sub(sub, text)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` (value read as YAML: numbers, booleans, null, lists)."""
    if "=" not in text:
        raise ConfigError(text, "override must look like key.sub=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(text, "override key is empty")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    squeezed = _colon_without_space(value)
    if squeezed is not None:
        name, _, rest = squeezed.partition(":")
        raise ConfigError(text, f"{squeezed!r} reads as a key without a value; YAML needs a "
                                f"space after the colon: {{{name}: {rest}}}")
    return key.split("."), value


def _colon_without_space(value: Any) -> str | None:
    """The first mapping key in ``value`` that looks like ``name:value`` and has no value
    (YAML's reading of ``{figshare:2}``), else None."""
    if isinstance(value, dict):
        for key, item in value.items():
            if item is None and isinstance(key, str) and ":" in key.strip(":"):
                return key
            found = _colon_without_space(item)
            if found is not None:
                return found
    if isinstance(value, list):
        return next((k for k in map(_colon_without_space, value) if k is not None), None)
    return None


def _apply(tree: dict[str, Any], keys: list[str], value: Any, origin: str) -> None:
    node: Any = tree
    model: Any = experiment_class(tree, origin)
    for depth, key in enumerate(keys):
        fields = getattr(model, "model_fields", None)
        if fields is None or key not in fields:
            where = ".".join(keys[: depth + 1])
            valid = ", ".join(sorted(fields)) if fields else "(no sub-keys)"
            raise ConfigError(origin, f"unknown key {where!r}; valid keys here: {valid}")
        if depth == len(keys) - 1:
            node[key] = value
            return
        model = _section(fields[key].annotation)
        if node.get(key) is None:  # an optional section, unset so far: the override opens it
            node[key] = {}
        node = node[key]
        if not isinstance(node, dict):
            raise ConfigError(origin, f"{'.'.join(keys[: depth + 1])} is not a section")


def _section(annotation: Any) -> Any:
    """The model class of a section, also when it is optional (``Section | None``)."""
    args = get_args(annotation)
    if type(None) not in args:  # not optional (a model, a list, a plain value): as it is
        return annotation
    members = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    return members[0] if members else annotation


def _format_validation(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{loc}: {msg}" + (f" (got {e['input']!r})" if e["type"] != "extra_forbidden"
                                       and not isinstance(e["input"], dict) else ""))
    return "; ".join(parts)


def build_config(tree: dict[str, Any], origin: str = "config") -> ExperimentConfig:
    """Validate a config tree against its task's schema; errors name the key and the problem."""
    schema = experiment_class(tree, origin)
    try:
        return schema.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(origin, _format_validation(err)) from None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML experiment file (or defaults when ``path`` is None) and apply overrides."""
    tree: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        path = Path(path)
        origin = str(path)
        if not path.is_file():
            raise ConfigError(path, "config file not found")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ConfigError(path, f"not valid YAML: {err}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(path, "top level must be a mapping of sections")
        tree = loaded
    parsed = [(text, *parse_override(text)) for text in overrides or []]
    for text, keys, value in sorted(parsed, key=lambda p: p[1] != ["task"]):  # task first
        _apply(tree, keys, value, f"override {text!r}")
    return build_config(tree, origin)


def resolve_data_root(cfg: ExperimentConfig, override: str | None = None) -> Path:
    """The dataset folder with ``${VAR:-default}`` expanded."""
    return Path(expand_env(override or cfg.data.root)).expanduser()


def dump_config(cfg: ExperimentConfig) -> str:
    """The config as YAML (what a run actually used)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
