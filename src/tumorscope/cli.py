"""One entry point: ``tumorscope <command>`` (train, evaluate, predict, info)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tumorscope import __version__
from tumorscope import commands as cmd
from tumorscope.errors import TumorscopeError


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a YAML config",
                       description="Train from a YAML experiment config. Any key can be "
                       "overridden as key.sub=value (e.g. trainer.epochs=3 model.input_size=128).")
    p.add_argument("--config", "--hparams", dest="config", type=Path,
                   help="experiment YAML (configs/...)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue an interrupted run from its last checkpoint")
    p.add_argument("--data-root", help="dataset folder (overrides data.root)")
    p.add_argument("--run-name", help="output.run_name")
    p.add_argument("--epochs", type=int, help="trainer.epochs")
    p.add_argument("--batch-size", type=int, help="trainer.batch_size")
    p.add_argument("--devices", help="trainer.devices (GPUs or CPU processes)")
    p.add_argument("--strategy", help="trainer.strategy (auto, ddp, ...)")
    p.add_argument("--num-nodes", type=int, help="trainer.num_nodes")
    p.add_argument("--gpus", dest="devices", help=argparse.SUPPRESS)  # the original flag name
    p.add_argument("--lr-scheduler", choices=["cosine", "plateau", "none"],
                   help="scheduler.name")
    p.add_argument("--root-dir", help="output.root (where runs are written)")
    p.add_argument("--model", help="a config by name, e.g. lgg/unet or lgg/unet-resnext50 "
                   "(instead of --config)")
    p.add_argument("--test", action="store_true",
                   help="after training, evaluate on the held-out test fold")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="metrics and report on a held-out patient fold")
    p.add_argument("--checkpoint", type=Path, help="model dir or .safetensors (default: shipped)")
    p.add_argument("--fold", type=int, help="fold to evaluate (default: the model's test fold)")
    p.add_argument("--out", type=Path, help="output folder (default: eval-fold<k> beside model)")
    p.add_argument("--data-root", help="dataset folder (default: the one in the model card)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--tta", action="store_true", help="average with horizontally flipped input")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="torch (reference, default) or onnx")
    p.add_argument("--allow-train-fold", action="store_true",
                   help="allow evaluating on a fold the model was trained on")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="class, mask and overlay for scan files")
    p.add_argument("files", nargs="*", type=Path, help="PNG/JPEG/TIFF, .mat, DICOM or NIfTI")
    p.add_argument("--image-path", type=Path, action="append", default=[],
                   help="a file to predict (the original flag; may repeat)")
    p.add_argument("--checkpoint", type=Path, help="model dir or .safetensors (default: shipped)")
    p.add_argument("--out", type=Path, default=Path("predictions"), help="output folder")
    p.add_argument("--slice", type=int, dest="slice_index",
                   help="for 3D volumes: predict this axial slice only")
    p.add_argument("--tta", action="store_true", help="average with horizontally flipped input")
    p.add_argument("--threshold", type=float, default=0.5, help="mask probability threshold")
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                   help="auto: ONNX Runtime when model.onnx exists and onnxruntime is installed")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(prog="tumorscope", description="Brain-tumour MRI toolkit: "
                                     "classify, segment, evaluate, predict.")
    parser.add_argument("--version", action="version", version=f"tumorscope {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_evaluate(sub)
    _add_predict(sub)
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
    p = sub.add_parser("card", help="write a Markdown model card from a card and metrics.json")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--metrics", type=Path, required=True, help="metrics.json of evaluate")
    p.add_argument("--command", dest="reproduce", default="", help="command that produced it")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("serve", help="web page + JSON API (FastAPI) with a loaded model")
    p.add_argument("--checkpoint", type=Path, help="model dir (default: shipped)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="server processes (each loads the "
                   "model once)")
    p.add_argument("--max-upload-mb", type=float, default=50.0)
    p.add_argument("--max-pixels", type=int, default=64 * 1024 * 1024,
                   help="largest decoded image (elements); larger uploads are refused")
    p.add_argument("--concurrency", type=int, default=4, help="predictions at a time")
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto")
    p.add_argument("--save-uploads", type=Path, metavar="DIR", help="keep every accepted upload "
                   "in DIR under a fresh id returned as upload_id (off: uploads stay in memory)")
    p = sub.add_parser("results", help="baseline + ablations -> docs/results.md (long: trains)")
    p.add_argument("--config", type=Path, default=Path("configs/figshare/joint-lite0.yaml"))
    p.add_argument("--checkpoint", type=Path, help="the default model (default: shipped)")
    p.add_argument("--runs", type=Path, default=Path("runs/results"))
    p.add_argument("--out", type=Path, default=Path("docs/results.md"))
    p = sub.add_parser("compare", help="models evaluated on the same fold, side by side, with "
                       "paired patient-bootstrap differences -> Markdown + chart")
    p.add_argument("metrics", nargs="+", type=Path,
                   help="metrics.json files (or evaluation folders) from tumorscope evaluate")
    p.add_argument("--names", nargs="+", help="a column name per file (default: model ids)")
    p.add_argument("--title", help="heading of the Markdown file")
    p.add_argument("--out", type=Path, default=Path("comparison.md"))
    p = sub.add_parser("augment", help="preview augmentations (grid of samples with masks)")
    p.add_argument("--config", type=Path)
    p.add_argument("--model", help="a config by name, e.g. lgg/unet")
    p.add_argument("--preview", action="store_true", help="write the preview grid (default)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--samples", type=int, default=6)
    p.add_argument("--out", type=Path, default=Path("augmentation-preview.png"))
    p = sub.add_parser("demo", help="predict held-out real scans with the default model")
    p.add_argument("--out", type=Path, default=Path("demo-output"))
    p.add_argument("--checkpoint", type=Path)
    p = sub.add_parser("info", help="show a model card")
    p.add_argument("--checkpoint", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; user errors print one line and exit 2 (no traceback)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    handler = getattr(cmd, f"cmd_{args.command}")
    try:
        return handler(args)
    except TumorscopeError as err:
        if args.verbose:
            raise
        print(f"tumorscope {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume a training run with: tumorscope train --resume RUN_DIR",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
