"""Inference back ends behind one call, ``runner(batch) -> (mask_logits, class_logits)``:
eager PyTorch, or ONNX Runtime on an exported ``model.onnx`` (faster on CPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from tumorscope.errors import CheckpointError, TumorscopeError
from tumorscope.io.writers import atomic_path

ONNX_NAME = "model.onnx"


class Runner(Protocol):
    """Runs the network on a normalised ``(B, C, S, S)`` float32 batch."""

    name: str

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class TorchRunner:
    """Eager PyTorch under ``inference_mode`` (channels-last memory on CPU)."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: str = "cpu") -> None:
        self.device = device
        self.model = model.to(device).eval()
        if device == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(batch).to(self.device)
        if self.device == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        mask, logits = self.model(x)
        return mask.float().cpu().numpy(), logits.float().cpu().numpy()


class OnnxRunner:
    """ONNX Runtime CPU session on an exported model."""

    name = "onnx"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
            raise CheckpointError(path, f"not a loadable ONNX model ({err})") from None
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mask, logits = self.session.run(["mask_logits", "class_logits"], {self.input: batch})
        return mask, logits


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


def export_onnx(model: torch.nn.Module, channels: int, size: int, out: Path,
                atol: float = 1e-4, rtol: float = 1e-4) -> float:
    """Export with a dynamic batch axis, then check ONNX Runtime against PyTorch.

    Every output must satisfy ``max|onnx - torch| <= atol + rtol * max|torch|``: float32
    kernels sum in different orders, so the bound scales with the output's range. Returns the
    largest absolute difference seen (the shipped model: about 2e-5).
    """
    model = model.eval().float()
    example = torch.randn(2, channels, size, size)
    with atomic_path(out) as tmp:
        torch.onnx.export(model, (example,), str(tmp), input_names=["image"],
                          output_names=["mask_logits", "class_logits"],
                          dynamic_axes={"image": {0: "batch"}, "mask_logits": {0: "batch"},
                                        "class_logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
        check = torch.randn(3, channels, size, size)
        with torch.inference_mode():
            ref = [t.numpy() for t in model(check)]
        got = OnnxRunner(tmp)(check.numpy())
        diff = max(float(np.abs(a - b).max()) for a, b in zip(ref, got, strict=True))
        for a, b in zip(ref, got, strict=True):
            bound = atol + rtol * float(np.abs(a).max())
            if float(np.abs(a - b).max()) > bound:
                raise CheckpointError(out, f"ONNX output differs from PyTorch by "
                                      f"{float(np.abs(a - b).max()):.2e} (> {bound:.1e}); "
                                      "not written")
    return diff
