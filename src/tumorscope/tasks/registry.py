"""Task registry: a task name (the config's and the model card's ``task``) -> everything the
pipeline needs to train, load, run, export and evaluate that kind of model.

Entries are ``"module:attribute"`` strings imported on first use, so looking a task up
imports neither Lightning nor the task's code: the inference layer and the server read
this registry without pulling in training. A new task adds its modules and one
:func:`register_task` call (see docs/architecture.md, "Adding a task").
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from tumorscope.errors import TumorscopeError


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's pieces live (each ``"module:attribute"``).

    - ``network(model_section: dict, num_classes: int, load_pretrained: bool) -> nn.Module``
    - ``module(cfg, classes, stats, load_pretrained) -> LightningModule`` (training only)
    - ``data(cfg, split) -> data.sampling.Loaders`` (training loaders, normalisation stats)
    - ``card_section(cfg, stats) -> dict``: the card's ``preprocessing`` section
    - ``inferer``: a class ``(runner, card, threshold, tta)`` with ``predict_scan`` and
      ``input_shape`` (see inference/predictor.py)
    - ``evaluator(evaluation.evaluate.EvaluationJob) -> EvaluationResult``
    - ``outputs``: the network's outputs in order (names of ONNX outputs and runner results)
    - ``optional_outputs``: outputs some models of the task add after those (e.g. a
      calibrated model's out-of-distribution distance)
    - ``card_markdown(card, metrics, command) -> str``: the Markdown model card
    - ``weights_prefix(ema)``: which LightningModule sub-module holds the exported weights
    """

    name: str
    outputs: tuple[str, ...]
    network: str
    module: str
    data: str
    card_section: str
    inferer: str
    evaluator: str
    card_markdown: str = "tumorscope.evaluation.card_markdown:render_model_card"
    optional_outputs: tuple[str, ...] = ()

    def output_names(self, count: int) -> tuple[str, ...]:
        """Names of a network's ``count`` outputs: the task's, then its optional ones."""
        names = self.outputs + self.optional_outputs
        if not len(self.outputs) <= count <= len(names):
            raise TumorscopeError(self.name, f"the network returned {count} outputs, the task "
                                  f"names {len(self.outputs)} {self.outputs} "
                                  f"(+ optional {self.optional_outputs})")
        return names[:count]

    def load(self, role: str) -> Any:
        """Import and return the attribute registered for ``role`` (e.g. 'module')."""
        target = getattr(self, role)
        module_name, _, attribute = target.partition(":")
        return getattr(importlib.import_module(module_name), attribute)

    @staticmethod
    def weights_prefix(ema: bool) -> str:
        """State-dict prefix of the weights to export from a task's Lightning checkpoint."""
        return "ema.module." if ema else "model."


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add ``spec`` under ``spec.name``."""
    if spec.name in _TASKS and _TASKS[spec.name] != spec:
        raise ValueError(f"task {spec.name!r} is registered twice")
    _TASKS[spec.name] = spec
    return spec


def task_names() -> list[str]:
    """Every registered task."""
    return sorted(_TASKS)


def get_task(name: object, where: object = "task") -> TaskSpec:
    """The task registered as ``name``; a one-line error naming ``where`` otherwise."""
    if not isinstance(name, str) or name not in _TASKS:
        raise TumorscopeError(str(where), f"unknown task {name!r}; known: {task_names()}")
    return _TASKS[name]


register_task(TaskSpec(
    name="joint",
    outputs=("mask_logits", "class_logits"),
    optional_outputs=("ood_distance",),
    network="tumorscope.models.joint:joint_from_config",
    module="tumorscope.tasks.joint:JointTask",
    data="tumorscope.data.slices:slice_loaders",
    card_section="tumorscope.transforms.slice2d:card_preprocessing",
    inferer="tumorscope.inference.joint:JointInferer",
    evaluator="tumorscope.evaluation.joint:evaluate_joint",
))

register_task(TaskSpec(
    name="brats",
    outputs=("region_logits",),
    network="tumorscope.models.brats:brats_from_config",
    module="tumorscope.tasks.brats:BratsTask",
    data="tumorscope.data.brats_samples:brats_loaders",
    card_section="tumorscope.data.brats:card_preprocessing",
    inferer="tumorscope.inference.brats:BratsInferer",
    evaluator="tumorscope.evaluation.brats:evaluate_brats",
    card_markdown="tumorscope.evaluation.brats_card:render_brats_card",
))

register_task(TaskSpec(
    name="classify",
    outputs=("class_logits",),
    network="tumorscope.models.classifier:classifier_from_config",
    module="tumorscope.tasks.classify:ClassifyTask",
    data="tumorscope.data.slices:slice_loaders",
    card_section="tumorscope.transforms.slice2d:card_preprocessing",
    inferer="tumorscope.inference.joint:JointInferer",
    evaluator="tumorscope.evaluation.joint:evaluate_joint",
    card_markdown="tumorscope.evaluation.classifier_card:render_classifier_card",
))
