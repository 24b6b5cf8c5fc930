"""``tumorscope export --format onnx``: a model as ``model.onnx`` beside its weights, with
the task's output names and dynamic batch and spatial axes, checked against PyTorch (at the
model's input size and a larger one) before it is kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tumorscope.checkpoint.store import checkpoint_paths, load_checkpoint
from tumorscope.errors import CheckpointError
from tumorscope.inference.runtime import ONNX_NAME, OnnxRunner
from tumorscope.io.writers import atomic_path
from tumorscope.tasks.registry import get_task


def export_onnx(model: torch.nn.Module, input_shape: tuple[int, ...], out: Path,
                output_names: tuple[str, ...], atol: float = 1e-4, rtol: float = 3e-4) -> float:
    """Export with dynamic batch and spatial axes, then check ONNX Runtime against PyTorch.

    ``input_shape`` is one sample's shape (channels first). Every output must satisfy
    ``max|onnx - torch| <= atol + rtol * max|torch|``: float32 kernels sum in different
    orders (ONNX Runtime also folds BatchNorm into the convolutions), so the bound scales
    with the output's range. The check inputs are seeded: an export passes or fails the same
    way every time. Returns the largest absolute difference seen (the shipped default model:
    7.3e-4).
    """
    model = model.eval().float()
    example = torch.randn(2, *input_shape)
    spatial = {d: f"dim{d}" for d in range(2, 1 + len(input_shape))}
    with torch.inference_mode():
        ranks = [t.ndim for t in _outputs(model(example))]
    # sizes may vary (a 2D BraTS model runs over whole slices): spatial axes are dynamic for
    # the input and for every output of the input's rank (masks, region maps)
    axes = {"image": {0: "batch", **spatial}}
    axes.update({name: {0: "batch", **(spatial if rank == example.ndim else {})}
                 for name, rank in zip(output_names, ranks, strict=True)})
    larger = (input_shape[0], *(n + 32 for n in input_shape[1:]))
    with atomic_path(out) as tmp:
        torch.onnx.export(model, (example,), str(tmp), input_names=["image"],
                          output_names=list(output_names), dynamic_axes=axes,
                          opset_version=17, dynamo=False)
        diffs = []
        seeded = torch.Generator().manual_seed(0)
        for shape in (input_shape, larger):
            check = torch.randn(3, *shape, generator=seeded)
            with torch.inference_mode():
                ref = [t.numpy() for t in _outputs(model(check))]
            got = OnnxRunner(tmp)(check.numpy())
            for a, name in zip(ref, output_names, strict=True):
                diff = float(np.abs(a - got[name]).max())
                bound = atol + rtol * float(np.abs(a).max())
                if diff > bound:
                    raise CheckpointError(out, f"ONNX output differs from PyTorch by "
                                          f"{diff:.2e} (> {bound:.1e}); not written")
                diffs.append(diff)
    return max(diffs)


def _outputs(result: torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]
             ) -> tuple[torch.Tensor, ...]:
    return tuple(result) if isinstance(result, tuple | list) else (result,)


def export_checkpoint_onnx(checkpoint: str | Path, out_dir: Path | None = None
                           ) -> tuple[Path, float]:
    """``model.onnx`` for a saved model (beside its weights unless ``out_dir``); returns the
    path and the largest difference to PyTorch."""
    model, card = load_checkpoint(checkpoint)
    spec = get_task(card.task)
    weights, _ = checkpoint_paths(checkpoint)
    out = (out_dir or weights.parent) / ONNX_NAME
    shape = spec.load("inferer").input_shape(card)
    with torch.inference_mode():
        count = len(_outputs(model(torch.zeros(1, *shape))))
    return out, export_onnx(model, shape, out, spec.output_names(count))
