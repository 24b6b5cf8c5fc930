"""Classifier speed on the CPU: training images per second through tumorscope's classify task
against a plain PyTorch loop of the same network, and inference milliseconds per slice with
PyTorch and ONNX Runtime, measured in one run on the same machine and the same input.

    python benchmarks/classify_speed.py --out docs/benchmarks.md

Training, per model (each from its shipped config in configs/classify/, random weights, one
stage with the body unfrozen, ``model.input_size`` = ``--size``):
- ``tumorscope``: a Lightning fit of ``ClassifyTask`` as ``tumorscope train`` configures it
  (its loss, per-group learning rates and scheduler, the EMA update after each step, logging)
  on in-memory batches: no data loading or augmentation, validation or checkpoints;
- ``plain``: forward, cross-entropy (capsule network: margin loss), backward, AdamW step.
Rounds alternate between the two so that both see the same machine load; one step is the time
from one batch's start to the next's (median after a warm-up step).

Inference: the network's forward on a batch of ``--batch`` slices at ``--size`` px, per slice
(median over repeats after warm-up): PyTorch as ``tumorscope evaluate`` and ``predict`` run
it (``inference_mode``, channels-last), and ONNX Runtime on the model exported by
``tumorscope export`` (checked against PyTorch before it is used).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from doc import update_section

REPO = Path(__file__).resolve().parents[1]
MODELS = ["resnet50", "tf_efficientnet_lite0", "capsule", "capsule-lite0"]
CONFIGS = {"resnet50": "resnet50-figshare.yaml", "tf_efficientnet_lite0": "lite0-brats-flair.yaml",
           "capsule": "capsule-figshare.yaml",  # any other timm name: resnet50's recipe
           "capsule-lite0": "capsule-lite0-figshare.yaml"}  # on the Lite0 front end


def _config(model: str, size: int, batch: int) -> Any:
    """The model's shipped classify config at ``size`` px: random weights, one stage."""
    from tumorscope.config import load_config

    overrides = ["model.encoder_weights=none", f"model.input_size={size}", "stages=[]",
                 "trainer.epochs=1", f"trainer.batch_size={batch}", "trainer.accelerator=cpu",
                 "optim.freeze_encoder_epochs=0"]
    if model not in CONFIGS:
        overrides.append(f"model.name={model}")
    return load_config(REPO / "configs/classify" / CONFIGS.get(model, CONFIGS["resnet50"]),
                       overrides)


def _batch(size: int, batch: int, classes: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"image": torch.randn(batch, 1, size, size, generator=generator),
            "label": torch.randint(0, classes, (batch,), generator=generator)}


class StepClock(L.Callback):
    """The time at each training batch's start and at the epoch's end."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def on_train_batch_start(self, *args: Any) -> None:
        self.marks.append(time.perf_counter())

    def on_train_epoch_end(self, *args: Any) -> None:
        self.marks.append(time.perf_counter())

    def steps(self) -> list[float]:
        """Seconds per step since the last call, the first (warm-up: new optimiser state)
        left out."""
        intervals = [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]
        self.marks = []
        return intervals[1:]


def tumorscope_steps(cfg: Any, classes: int, size: int, steps: int
                     ) -> Callable[[], list[float]]:
    """A function that fits ``ClassifyTask`` for ``steps + 1`` batches; seconds per step."""
    from torch.utils.data import DataLoader

    from tumorscope.tasks.classify import ClassifyTask

    torch.manual_seed(0)
    module = ClassifyTask(cfg.model_dump(mode="json"), [f"c{i}" for i in range(classes)],
                          load_pretrained=False)
    batches = [_batch(size, cfg.trainer.batch_size, classes)] * (steps + 1)
    clock = StepClock()

    def run() -> list[float]:
        trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, precision="32",
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, limit_val_batches=0,
                            num_sanity_val_steps=0, callbacks=[clock])
        trainer.fit(module, DataLoader(batches, batch_size=None))  # type: ignore[arg-type]
        return clock.steps()
    return run


def plain_steps(cfg: Any, classes: int, size: int, steps: int) -> Callable[[], list[float]]:
    """A function that runs ``steps`` plain PyTorch training steps; seconds per step."""
    from tumorscope.models.capsule import lengths_from_logits, margin_loss
    from tumorscope.models.classifier import classifier_from_config

    torch.manual_seed(0)
    model = classifier_from_config(cfg.model.model_dump(), classes, load_pretrained=False)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr,
                            weight_decay=cfg.optim.weight_decay)
    data = _batch(size, cfg.trainer.batch_size, classes)
    capsule = cfg.model.arch == "capsule"

    def step() -> None:
        (logits,) = model(data["image"])
        loss = margin_loss(lengths_from_logits(logits), data["label"]) if capsule else \
            F.cross_entropy(logits, data["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up: optimiser state, kernel selection

    def run() -> list[float]:
        out = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            out.append(time.perf_counter() - start)
        return out
    return run


def inference_ms(cfg: Any, classes: int, size: int, batch: int, repeats: int,
                 threads: int) -> dict[str, float]:
    """Milliseconds per slice of the network's forward, PyTorch and ONNX Runtime."""
    import numpy as np

    from tumorscope.inference.onnx_export import export_onnx
    from tumorscope.inference.runtime import OnnxRunner, Runner, TorchRunner
    from tumorscope.models.classifier import classifier_from_config

    torch.manual_seed(0)
    model = classifier_from_config(cfg.model.model_dump(), classes, load_pretrained=False)
    images = np.random.default_rng(0).standard_normal((batch, 1, size, size), np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(tmp) / "model.onnx"
        export_onnx(model, (1, size, size), onnx, ("class_logits",))
        runners: dict[str, Runner] = {"torch": TorchRunner(model, ("class_logits",)),
                                      "onnx": OnnxRunner(onnx, threads=threads)}
        out = {}
        for name, runner in runners.items():
            for _ in range(2):
                runner(images)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                runner(images)
                times.append(time.perf_counter() - start)
            out[f"{name}_ms_per_slice"] = 1000 * statistics.median(times) / batch
    return out


def measure(model: str, args: argparse.Namespace) -> dict[str, Any]:
    """Training (both ways, rounds interleaved) and inference speed of one model."""
    from tumorscope.models.capsule import count_parameters
    from tumorscope.models.classifier import classifier_from_config

    cfg = _config(model, args.size, args.batch)
    ways = {"tumorscope": tumorscope_steps(cfg, args.classes, args.size, args.steps),
            "plain": plain_steps(cfg, args.classes, args.size, args.steps)}
    times: dict[str, list[float]] = {way: [] for way in ways}
    for r in range(args.rounds):
        for way in ways if r % 2 == 0 else list(ways)[::-1]:
            times[way] += ways[way]()
        print(f"{model}: round {r + 1}/{args.rounds}", flush=True)
    train = {way: {"ms_per_step": 1000 * statistics.median(t),
                   "images_per_s": args.batch / statistics.median(t), "steps": len(t)}
             for way, t in times.items()}
    net = classifier_from_config(cfg.model.model_dump(), args.classes, load_pretrained=False)
    return {"parameters": count_parameters(net), "train": train,
            "inference": inference_ms(cfg, args.classes, args.size, args.batch, args.repeats,
                                      args.threads)}


def markdown(results: dict[str, dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    """The section for docs/benchmarks.md."""
    rows = []
    for model, r in results.items():
        ours, plain = (r["train"][way]["images_per_s"] for way in ("tumorscope", "plain"))
        inf = r["inference"]
        rows.append(f"| {model} | {r['parameters'] / 1e6:.2f}M | {ours:.1f} | {plain:.1f} | "
                    f"{ours / plain:.2f}x | {inf['torch_ms_per_slice']:.1f} | "
                    f"{inf['onnx_ms_per_slice']:.1f} |")
    header = ("| model | parameters | train img/s (tumorscope) | train img/s (plain) | "
              "tumorscope / plain | PyTorch ms/slice | ONNX Runtime ms/slice |\n"
              "| --- | --- | --- | --- | --- | --- | --- |\n")
    return f"""## Classifier speed on the CPU (`benchmarks/classify_speed.py`)

Machine: {platform.processor() or platform.machine()}, {args.threads} threads; torch
{torch.__version__}, Python {platform.python_version()}. Random weights, {args.size} px,
batch {args.batch}, {args.classes} classes. Training: median of {args.rounds * args.steps}
steps per way, rounds interleaved; `tumorscope` is a Lightning fit of `ClassifyTask` as
`tumorscope train` configures it (loss, per-group learning rates, scheduler, EMA update,
logging) on in-memory batches (no data loading, augmentation, validation or checkpoints);
`plain` is forward, loss (cross-entropy; capsule network: margin loss), backward, AdamW step.
Inference: the network alone, batch {args.batch}, per slice, median of {args.repeats}.

Command: `{command}`

""" + header + "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS,
                        help="timm model names, 'capsule' or 'capsule-lite0' (default: "
                        "%(default)s)")
    parser.add_argument("--size", type=int, default=128, help="input size in px")
    parser.add_argument("--batch", type=int, default=16, help="training and inference batch")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=4, help="timed training steps per round")
    parser.add_argument("--repeats", type=int, default=10, help="timed inference batches")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path,
                        default=REPO / "benchmarks/results/classify_speed.json",
                        help="write the numbers here (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="update this Markdown file's section")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # banners at every fit
    warnings.filterwarnings("ignore", ".*(does not have many workers|no `val_dataloader`|"
                            "in eval mode|LeafSpec).*")  # the EMA copy is in eval mode
    command = shlex.join(["python", "benchmarks/classify_speed.py", *sys.argv[1:]])
    results = {model: measure(model, args) for model in args.models}
    text = markdown(results, args, command)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "out")}
    args.json.write_text(json.dumps({
        "benchmark": "classify_speed", "command": command, "settings": settings,
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
        "python": platform.python_version(), "models": results}, indent=2) + "\n")
    print(f"numbers written to {args.json}")
    if args.out:
        update_section(args.out, "classify-speed", text)


if __name__ == "__main__":
    main()
