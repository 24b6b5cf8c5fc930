"""``tumorscope predict``: class, tumour mask and overlay for scan files (a classifier: class
and probabilities)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tumorscope.errors import TumorscopeError
from tumorscope.locations import default_checkpoint


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``predict`` sub-command."""
    p = sub.add_parser("predict", help="class, mask and overlay for scan files")
    p.add_argument("files", nargs="*", type=Path, help="PNG/JPEG/TIFF, .mat, DICOM or NIfTI; "
                   "for a BraTS model, case folders")
    p.add_argument("--image-path", type=Path, action="append", default=[],
                   help="a file to predict (the original flag; may repeat)")
    p.add_argument("--checkpoint", type=Path, help="model dir or .safetensors (default: shipped)")
    p.add_argument("--out", type=Path, default=Path("predictions"), help="output folder")
    p.add_argument("--slice", type=int, dest="slice_index",
                   help="for 3D volumes: predict this axial slice only")
    p.add_argument("--tta", action="store_true", help="average with horizontally flipped input")
    p.add_argument("--mc-dropout", type=int, default=0, metavar="N",
                   help="Monte Carlo dropout: average N passes with dropout active and report "
                   "their disagreement (mutual information) as uncertainty (torch backend)")
    p.add_argument("--threshold", type=probability, default=None,
                   help="mask probability threshold, strictly between 0 and 1 (default: the "
                        "one the model card's calibration chose on validation, else 0.5)")
    p.add_argument("--outline", default=None, metavar="DATASET",
                   help="a model with one mask per outline definition (model.outlines): the "
                   "one to draw, e.g. lgg (FLAIR abnormality) or brats (whole tumour with "
                   "oedema); default the model's first")
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                   help="auto: ONNX Runtime when model.onnx exists and onnxruntime is installed")
    for modality in ("t1", "t1ce", "t2", "flair"):
        p.add_argument(f"--{modality}", type=Path, metavar="NIFTI", help=f"BraTS model: the "
                       f"{modality} file of one case given file by file")
    p.set_defaults(handler=run)


def probability(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1 (no nan, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:  # also false for nan
        raise argparse.ArgumentTypeError(f"{text} is not strictly between 0 and 1")
    return value


def run(args: argparse.Namespace) -> int:
    """Predict every file, write masks, overlays and JSON, and print a table."""
    files: list[Path] = [*args.files, *args.image_path]
    explicit = {m: getattr(args, m) for m in ("t1", "t1ce", "t2", "flair")
                if getattr(args, m) is not None}
    if not files and not explicit:  # before loading the model: fail fast
        raise TumorscopeError("predict", "give at least one scan file (or --image-path FILE)")

    from rich.console import Console
    from rich.table import Table

    from tumorscope.inference.outputs import predict_files
    from tumorscope.inference.predictor import Predictor

    predictor = Predictor.from_checkpoint(args.checkpoint or default_checkpoint(), tta=args.tta,
                                          threshold=args.threshold, backend=args.backend,
                                          mc_dropout=args.mc_dropout, outline=args.outline)
    if predictor.card.task == "brats":
        return _predict_cases(predictor, files, explicit, args.out)
    if explicit:
        raise TumorscopeError("--t1/--t1ce/--t2/--flair", f"model {predictor.model_id} takes "
                              "single slices, not a four-modality case; pass --checkpoint with "
                              "a BraTS model")
    folder = next((f for f in files if f.is_dir()), None)
    if folder is not None:
        raise TumorscopeError(folder, f"is a folder (a BraTS case?); model {predictor.model_id} "
                              "takes single scans: give files, or --checkpoint a BraTS model")
    records = predict_files(predictor, files, args.out, args.slice_index)
    segments = bool(getattr(predictor.inferer, "segments", True))  # a classifier: no mask
    table = Table(title=f"model {predictor.model_id} ({predictor.backend})")
    sizes = ["tumour size", "area / volume"] if segments else []
    for col in ["file", "class", *predictor.classes, *sizes]:
        table.add_column(col)
    for r in records:
        table.add_row(Path(r["file"]).name, r["class"],
                      *(f"{r['probabilities'][c]:.3f}" for c in predictor.classes),
                      *(tumour_size(r) if segments else ()))
    Console().print(table)
    for r in records:
        if not r.get("in_distribution", True) or not r.get("tumour_found", True):
            print(f"{Path(r['file']).name}: {r['message']}")
    print(f"{'masks, overlays and JSON' if segments else 'JSON'} written to {args.out}/")
    return 0


def tumour_size(record: dict[str, Any]) -> tuple[str, str]:
    """Size cells with units: pixels and mm² for a slice, voxels and mm³ for a volume."""
    if "tumour_voxels" in record:
        count, unit, physical, cubed = record["tumour_voxels"], "voxels", \
            record.get("tumour_volume_mm3"), "mm³"
    else:
        count, unit, physical, cubed = record["tumour_area_pixels"], "px", \
            record.get("tumour_area_mm2"), "mm²"
    return f"{count} {unit}", f"{physical:.1f} {cubed}" if physical is not None else "-"


def _predict_cases(predictor: Any, folders: list[Path], explicit: dict[str, Path],
                   out: Path) -> int:
    """BraTS: case folders and/or one case given file by file -> segmentations and a table."""
    from rich.console import Console
    from rich.table import Table

    from tumorscope.inference.case_outputs import predict_cases

    sources: list[Path | dict[str, Path]] = [*folders, *([explicit] if explicit else [])]
    records = predict_cases(predictor, sources, out)
    table = Table(title=f"model {predictor.model_id} ({predictor.backend})")
    for col in ["case", "WT cm³", "TC cm³", "ET cm³", "segmentation"]:
        table.add_column(col)
    for r in records:
        table.add_row(r["case"], *(f"{r['volumes_cm3'][k]:.1f}" for k in ("WT", "TC", "ET")),
                      r["outputs"]["segmentation"])
    Console().print(table)
    print(f"segmentations, views, GIFs and JSON written to {out}/")
    return 0
