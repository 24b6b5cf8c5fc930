"""``tumorscope export``: a training run as safetensors + card, or a saved model to ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path

from tumorscope.errors import TumorscopeError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` sub-command."""
    p = sub.add_parser("export", help="export a run as safetensors + card, or a model to ONNX",
                       description="--run RUN: best checkpoint of a run -> safetensors + card. "
                       "--checkpoint DIR --format onnx: model.onnx beside the weights, checked "
                       "against PyTorch (max difference <= 1e-4 + 1e-4 * output range).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", type=Path, help="run folder (runs/<name>)")
    src.add_argument("--checkpoint", type=Path, help="model dir (for --format onnx)")
    p.add_argument("--format", choices=["safetensors", "onnx"], default=None,
                   help="default: safetensors for --run, onnx for --checkpoint")
    p.add_argument("--out", type=Path, help="output folder (default: <run>/model)")
    p.add_argument("--half", action="store_true", help="store weights as float16 (half size)")
    p.add_argument("--source", type=Path, help="a specific .ckpt (default: best, else last)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Export to the format asked for (default: safetensors for --run, onnx for --checkpoint)."""
    fmt = args.format or ("safetensors" if args.run else "onnx")
    if fmt == "onnx":
        if args.checkpoint is None:
            raise TumorscopeError("--format onnx", "give the model with --checkpoint DIR")
        from tumorscope.inference.onnx_export import export_checkpoint_onnx

        out, diff = export_checkpoint_onnx(args.checkpoint, args.out)
        print(f"ONNX model written to {out} (max abs difference to PyTorch {diff:.1e})")
        return 0
    if args.run is None:
        raise TumorscopeError("--format safetensors", "give the training run with --run RUN")
    from tumorscope.training.export import export_checkpoint
    from tumorscope.training.run import config_for_resume

    cfg = config_for_resume(args.run, [])
    out = export_checkpoint(cfg, args.source, out=args.out, half=args.half)
    print(f"model written to {out}")
    return 0
