"""The ``tumorscope`` sub-commands: each takes the parsed arguments and returns an exit code."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tumorscope.errors import TumorscopeError
from tumorscope.locations import default_checkpoint, named_config


def cmd_train(args: argparse.Namespace) -> int:
    from tumorscope.config import load_config
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
        from tumorscope.evaluation.evaluate import evaluate

        evaluate(out, cfg.data.test_fold, cfg.run_dir / "eval-test", args.data_root)
        print(f"test-fold report: {cfg.run_dir / 'eval-test' / 'report.html'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tumorscope.checkpoint.store import read_card
    from tumorscope.evaluation.evaluate import evaluate

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

    from tumorscope.inference.outputs import predict_files
    from tumorscope.inference.predictor import Predictor

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
        from tumorscope.checkpoint.store import checkpoint_paths, load_checkpoint
        from tumorscope.inference.runtime import ONNX_NAME, export_onnx

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

    from tumorscope.checkpoint.store import read_card
    from tumorscope.evaluation.card_markdown import render_model_card
    from tumorscope.io.writers import write_atomic

    metrics = json.loads(args.metrics.read_text(encoding="utf-8"))
    text = render_model_card(read_card(args.checkpoint), metrics, args.reproduce)
    write_atomic(args.out, lambda p: p.write_text(text, encoding="utf-8"))
    print(f"model card written to {args.out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import json

    import uvicorn

    from tumorscope.checkpoint.store import read_card

    ckpt = (args.checkpoint or default_checkpoint()).resolve()
    read_card(ckpt)  # fail here, with a clear message, rather than in a worker
    settings = {"checkpoint": str(ckpt), "max_upload_bytes": int(args.max_upload_mb * 2**20),
                "max_elements": args.max_pixels, "max_concurrency": args.concurrency,
                "backend": args.backend,
                "save_uploads": str(args.save_uploads.resolve()) if args.save_uploads else None}
    if args.save_uploads:
        args.save_uploads.mkdir(parents=True, exist_ok=True)
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


def cmd_compare(args: argparse.Namespace) -> int:
    import shlex

    from tumorscope.evaluation.compare import write_comparison

    words = ["tumorscope", "compare", *map(str, args.metrics)]
    words += ["--names", *args.names] if args.names else []
    words += ["--title", args.title] if args.title else []
    command = shlex.join([*words, "--out", str(args.out)])
    out = write_comparison(args.metrics, args.out, args.names, args.title, command)
    print(f"comparison written to {out} (chart: {out.with_suffix('.png')})")
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    from tumorscope.augment_preview import preview_grid
    from tumorscope.config import load_config

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

    from tumorscope.checkpoint.store import read_card

    card = read_card(args.checkpoint or default_checkpoint())
    card.pop("training_config", None)
    print(json.dumps(card, indent=2))
    return 0
