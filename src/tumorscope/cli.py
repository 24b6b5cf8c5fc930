"""One entry point: ``tumorscope <command>`` (train, evaluate, predict, info)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from tumorscope import __version__
from tumorscope.errors import TumorscopeError

DEFAULT_MODEL_DIRS = [Path(__file__).resolve().parents[2] / "models" / "default"]


def default_checkpoint() -> Path:
    """The shipped default model (``$TUMORSCOPE_MODEL`` overrides)."""
    env = os.environ.get("TUMORSCOPE_MODEL")
    candidates = [Path(env)] if env else DEFAULT_MODEL_DIRS
    for path in candidates:
        if (path / "model.json").is_file() or path.with_suffix(".json").is_file():
            return path
    raise TumorscopeError("--checkpoint", "no checkpoint given and no default model found at "
                          f"{candidates[0]}; train one (tumorscope train) or pass --checkpoint")


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
    p = sub.add_parser("results", help="baseline + ablations -> docs/results.md (long: trains)")
    p.add_argument("--config", type=Path, default=Path("configs/figshare/joint-lite0.yaml"))
    p.add_argument("--checkpoint", type=Path, help="the default model (default: shipped)")
    p.add_argument("--runs", type=Path, default=Path("runs/results"))
    p.add_argument("--out", type=Path, default=Path("docs/results.md"))
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


def cmd_train(args: argparse.Namespace) -> int:
    from tumorscope.training.config import load_config
    from tumorscope.training.run import config_for_resume, train

    overrides = list(args.overrides)
    for flag, key in (("run_name", "output.run_name"), ("epochs", "trainer.epochs"),
                      ("batch_size", "trainer.batch_size"), ("devices", "trainer.devices"),
                      ("strategy", "trainer.strategy"), ("num_nodes", "trainer.num_nodes"),
                      ("lr_scheduler", "scheduler.name"), ("root_dir", "output.root")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.model is not None:
        if args.config is not None:
            raise TumorscopeError("--model", "give either --model or --config, not both")
        args.config = named_config(args.model)
    if args.resume is not None:
        cfg = config_for_resume(args.resume, overrides)
    else:
        if args.config is None:
            raise TumorscopeError("--config", "give an experiment YAML (see configs/), "
                                  "--model NAME or --resume")
        cfg = load_config(args.config, overrides)
    out = train(cfg, resume=args.resume is not None, data_root=args.data_root)
    print(f"model written to {out}")
    if args.test:
        from tumorscope.evaluation import evaluate

        evaluate(out, cfg.data.test_fold, cfg.run_dir / "eval-test", args.data_root)
        print(f"test-fold report: {cfg.run_dir / 'eval-test' / 'report.html'}")
    return 0


CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def named_config(name: str) -> Path:
    """``lgg/unet`` or ``unet-resnext50`` -> the matching file under configs/."""
    path = Path(name)
    if path.is_file():
        return path
    matches = sorted(CONFIG_DIR.glob(f"{name}.yaml")) or sorted(CONFIG_DIR.rglob(f"{name}.yaml"))
    if len(matches) != 1:
        known = sorted(str(p.relative_to(CONFIG_DIR).with_suffix("")) for p in
                       CONFIG_DIR.rglob("*.yaml"))
        why = "is ambiguous" if matches else "not found"
        raise TumorscopeError("--model", f"config {name!r} {why}; known: {', '.join(known)}")
    return matches[0]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tumorscope.checkpoint import read_card
    from tumorscope.evaluation import evaluate

    ckpt = args.checkpoint or default_checkpoint()
    card = read_card(ckpt)
    fold = args.fold if args.fold is not None else card["data"]["split"]["test_fold"]
    model_dir = Path(ckpt) if Path(ckpt).is_dir() else Path(ckpt).parent
    out = args.out or model_dir / f"eval-fold{fold}"
    m = evaluate(ckpt, fold, out, args.data_root, args.batch_size, args.tta,
                 allow_train_fold=args.allow_train_fold, backend=args.backend)
    table = Table(title=f"fold {fold} ({m['fold_role']}): {m['split']['slices']} slices, "
                  f"{m['split']['patients']} patients")
    table.add_column("metric")
    table.add_column("value", justify="right")
    c, s = m["classification"], m["segmentation"]
    for name, value in [("accuracy", c["accuracy"]), ("macro-F1", c["macro_f1"]),
                        ("Dice (tumour slices)", s["dice_mean_tumour"]),
                        ("Dice (pooled)", s["dice_pooled"]), ("IoU (tumour slices)",
                                                               s["iou_mean_tumour"])]:
        table.add_row(name, f"{value:.3f}")
    Console().print(table)
    print(f"report: {out / 'report.html'}\nmetrics: {out / 'metrics.json'}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tumorscope.inference import Predictor
    from tumorscope.predict import predict_files

    if not args.files and not args.image_path:
        raise TumorscopeError("predict", "give at least one scan file (or --image-path FILE)")
    predictor = Predictor.from_checkpoint(args.checkpoint or default_checkpoint(), tta=args.tta,
                                          threshold=args.threshold, backend=args.backend)
    files = [*args.files, *args.image_path]
    if not files:
        raise TumorscopeError("predict", "give at least one scan file (or --image-path FILE)")
    records = predict_files(predictor, files, args.out, args.slice_index)
    table = Table(title=f"model {predictor.model_id} ({predictor.backend})")
    for col in ["file", "class", *predictor.classes, "area px", "area mm²"]:
        table.add_column(col)
    for r in records:
        area_mm = r.get("tumour_area_mm2", r.get("tumour_volume_mm3"))
        table.add_row(Path(r["file"]).name, r["class"],
                      *(f"{r['probabilities'][c]:.3f}" for c in predictor.classes),
                      str(r.get("tumour_area_pixels", r.get("tumour_voxels"))),
                      f"{area_mm:.1f}" if area_mm is not None else "-")
    Console().print(table)
    print(f"masks, overlays and JSON written to {args.out}/")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tumorscope.training.run import config_for_resume, export_checkpoint

    fmt = args.format or ("safetensors" if args.run else "onnx")
    if fmt == "onnx":
        from tumorscope.checkpoint import checkpoint_paths, load_checkpoint
        from tumorscope.runtime import ONNX_NAME, export_onnx

        if args.checkpoint is None:
            raise TumorscopeError("--format onnx", "give the model with --checkpoint DIR")
        model, card = load_checkpoint(args.checkpoint)
        weights, _ = checkpoint_paths(args.checkpoint)
        out = (args.out or weights.parent) / ONNX_NAME
        pre = card["preprocessing"]
        diff = export_onnx(model, int(pre["in_channels"]), int(pre["input_size"]), out)
        print(f"ONNX model written to {out} (max abs difference to PyTorch {diff:.1e})")
        return 0
    if args.run is None:
        raise TumorscopeError("--format safetensors", "give the training run with --run RUN")
    cfg = config_for_resume(args.run, [])
    out = export_checkpoint(cfg, args.source, out=args.out, half=args.half)
    print(f"model written to {out}")
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    import json

    from tumorscope.checkpoint import read_card
    from tumorscope.io.writers import write_atomic
    from tumorscope.reporting.model_card import render_model_card

    metrics = json.loads(args.metrics.read_text(encoding="utf-8"))
    text = render_model_card(read_card(args.checkpoint), metrics, args.reproduce)
    write_atomic(args.out, lambda p: p.write_text(text, encoding="utf-8"))
    print(f"model card written to {args.out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import json

    import uvicorn

    from tumorscope.checkpoint import read_card

    ckpt = (args.checkpoint or default_checkpoint()).resolve()
    read_card(ckpt)  # fail here, with a clear message, rather than in a worker
    settings = {"checkpoint": str(ckpt), "max_upload_bytes": int(args.max_upload_mb * 2**20),
                "max_elements": args.max_pixels, "max_concurrency": args.concurrency,
                "backend": args.backend}
    os.environ["TUMORSCOPE_SERVE_SETTINGS"] = json.dumps(settings)
    print(f"serving {ckpt} on http://{args.host}:{args.port}  (API docs: /docs)", flush=True)
    uvicorn.run("tumorscope.serve.factory:app_from_env", factory=True, host=args.host,
                port=args.port, workers=args.workers, log_level="info")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from tumorscope.experiments.results import run_suite, write_results

    model = args.checkpoint or default_checkpoint()
    numbers = run_suite(args.config, model, args.runs)
    print(f"results written to {write_results(numbers, args.out, model)}")
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    from tumorscope.augment_preview import preview_grid
    from tumorscope.training.config import load_config

    config = args.config or (named_config(args.model) if args.model else None)
    if config is None:
        raise TumorscopeError("--config", "give an experiment YAML or --model NAME")
    out = preview_grid(load_config(config, args.overrides), args.out, args.samples)
    print(f"augmentation preview written to {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tumorscope.demo import run_demo

    records = run_demo(args.out, args.checkpoint)
    table = Table(title="held-out scans (patients never seen in training)")
    for col in ["file", "true class", "predicted", "probability", "tumour area px"]:
        table.add_column(col)
    for r in records:
        table.add_row(Path(r["file"]).name, r["true_class"], r["class"],
                      f"{r['probabilities'][r['class']]:.3f}", str(r["tumour_area_pixels"]))
    Console().print(table)
    print(f"overlays, masks and JSON in {args.out}/")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import json

    from tumorscope.checkpoint import read_card

    card = read_card(args.checkpoint or default_checkpoint())
    card.pop("training_config", None)
    print(json.dumps(card, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; user errors print one line and exit 2 (no traceback)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
                "demo": cmd_demo, "export": cmd_export, "serve": cmd_serve, "card": cmd_card,
                "results": cmd_results, "augment": cmd_augment,
                "info": cmd_info}
    try:
        return commands[args.command](args)
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
