"""Inference back ends behind one call, ``runner(batch) -> {output name: array}``: eager
PyTorch, or ONNX Runtime on an exported ``model.onnx`` (faster on CPU). Outputs are named
(the task registry's ``outputs``), so several heads, region maps or embeddings pass through."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from tumorscope.errors import CheckpointError, TumorscopeError

ONNX_NAME = "model.onnx"


class Runner(Protocol):
    """Runs the network on a normalised float32 batch ``(B, C, ...)``; named outputs."""

    name: str
    outputs: tuple[str, ...]

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


class TorchRunner:
    """Eager PyTorch under ``inference_mode`` (channels-last memory on CPU)."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, outputs: tuple[str, ...],
                 device: str = "cpu", optional: tuple[str, ...] = ()) -> None:
        self.outputs, self.optional = outputs, optional
        self.device = device
        self.model = model.to(device).eval()
        volumetric = any(isinstance(m, torch.nn.Conv3d) for m in model.modules())
        if device == "cpu" and not volumetric:  # channels-last exists for 2D layouts only
            self.model = self.model.to(memory_format=torch.channels_last)

    @property
    def threads(self) -> int | None:
        """PyTorch's intra-op threads on the CPU (None on an accelerator)."""
        return torch.get_num_threads() if self.device == "cpu" else None

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(batch).to(self.device)
        if self.device == "cpu" and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        result = self.model(x)
        values = result if isinstance(result, tuple | list) else (result,)
        names = (self.outputs + self.optional)[:len(values)]
        if not len(self.outputs) <= len(values) <= len(self.outputs) + len(self.optional):
            raise CheckpointError(self.name, f"the network returned {len(values)} outputs, the "
                                  f"task names {len(self.outputs)} {self.outputs}")
        return {name: v.float().cpu().numpy() for name, v in zip(names, values, strict=True)}


class MCDropoutRunner(TorchRunner):
    """Monte Carlo dropout (Gal & Ghahramani 2016): ``samples`` passes with the network's
    dropout layers active (everything else in eval mode). Each output is the passes' mean;
    ``class_logits`` also comes back per pass as ``class_logits_mc`` ``(samples, B, K)``.
    Toggles module modes while it runs: one caller at a time (CLI, evaluation)."""

    def __init__(self, model: torch.nn.Module, outputs: tuple[str, ...], samples: int,
                 device: str = "cpu", optional: tuple[str, ...] = ()) -> None:
        super().__init__(model, outputs, device, optional)
        if samples < 2:
            raise TumorscopeError("--mc-dropout", f"needs at least 2 samples, got {samples}")
        self.samples = samples
        self.dropouts = [m for m in self.model.modules()
                         if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0]
        if not self.dropouts:
            raise CheckpointError("--mc-dropout", "the network has no dropout layer to sample")

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        for layer in self.dropouts:
            layer.train()
        try:
            passes = [TorchRunner.__call__(self, batch) for _ in range(self.samples)]
        finally:
            for layer in self.dropouts:
                layer.eval()
        out = {k: np.mean([p[k] for p in passes], axis=0) for k in passes[0]}
        if "class_logits" in out:
            out["class_logits_mc"] = np.stack([p["class_logits"] for p in passes])
        return out


class OnnxRunner:
    """ONNX Runtime CPU session on an exported model."""

    name = "onnx"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        self.threads = threads or None  # None: ONNX Runtime's default (physical cores)
        try:
            self.session = ort.InferenceSession(str(path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
            raise CheckpointError(path, f"not a loadable ONNX model ({err})") from None
        self.input = self.session.get_inputs()[0].name
        self.outputs = tuple(o.name for o in self.session.get_outputs())

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(list(self.outputs), {self.input: batch})
        return dict(zip(self.outputs, values, strict=True))


class TimedRunner:
    """Another runner, timed: adds up the seconds its calls take (``seconds``)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.name, self.outputs = runner.name, runner.outputs
        self.threads: int | None = getattr(runner, "threads", None)
        self.seconds = 0.0

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        out = self.runner(batch)
        self.seconds += time.perf_counter() - start
        return out


def mc_samples(runner: Runner) -> int:
    """Monte Carlo dropout passes of a runner (0 without), also through a TimedRunner."""
    return int(getattr(getattr(runner, "runner", runner), "samples", 0))


def onnx_available() -> bool:
    """True when onnxruntime is installed."""
    return importlib.util.find_spec("onnxruntime") is not None


def choose_backend(requested: str, onnx_path: Path) -> str:
    """'auto' picks ONNX Runtime when installed and ``model.onnx`` exists, else torch."""
    if requested == "auto":
        return "onnx" if onnx_available() and onnx_path.is_file() else "torch"
    if requested == "onnx":
        if not onnx_available():
            raise TumorscopeError("--backend onnx", "onnxruntime is not installed "
                                  "(pip install onnxruntime)")
        if not onnx_path.is_file():
            raise CheckpointError(onnx_path, "no ONNX model; create it with "
                                  "`tumorscope export --checkpoint DIR --format onnx`")
    elif requested != "torch":
        raise TumorscopeError("--backend", f"unknown backend {requested!r} (auto, torch, onnx)")
    return requested
