"""``tumorscope evaluate``: metrics and an HTML report on a held-out patient fold."""

from __future__ import annotations

import argparse
from pathlib import Path

from tumorscope.errors import TumorscopeError
from tumorscope.locations import default_checkpoint


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    p = sub.add_parser("evaluate", help="metrics and report on a held-out patient fold")
    p.add_argument("--checkpoint", type=Path, help="model dir or .safetensors (default: shipped)")
    p.add_argument("--fold", type=int, help="fold to evaluate (default: the model's test fold)")
    p.add_argument("--out", type=Path, help="output folder (default: eval-fold<k> beside model)")
    p.add_argument("--data-root", help="dataset folder (default: the one in the model card)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--tta", action="store_true", help="average with horizontally flipped input")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="torch (reference, default) or onnx")
    p.add_argument("--mc-dropout", type=int, default=0, metavar="N",
                   help="Monte Carlo dropout: average N passes with dropout active and report "
                   "their disagreement (mutual information) as uncertainty (torch backend)")
    p.add_argument("--sources", nargs="+", metavar="DATASET",
                   help="datasets of a mixed collection to evaluate on (default: those the "
                   "model trained on), e.g. the one a leave-one-dataset-out model never saw")
    p.add_argument("--allow-train-fold", action="store_true",
                   help="allow evaluating on a fold the model was trained on")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, then print the headline metrics as a table."""
    from rich.console import Console
    from rich.table import Table

    from tumorscope.checkpoint.store import read_card
    from tumorscope.evaluation.evaluate import evaluate

    ckpt = Path(args.checkpoint or default_checkpoint())
    card = read_card(ckpt)
    fold = args.fold if args.fold is not None else card.data.split.test_fold
    if fold is None:
        raise TumorscopeError("--fold", "the model card records no held-out test fold; give "
                              "--fold (with --allow-train-fold if the model trained on it)")
    model_dir = ckpt if ckpt.is_dir() else ckpt.parent
    out: Path = args.out or model_dir / f"eval-fold{fold}"
    m = evaluate(ckpt, fold, out, args.data_root, args.batch_size, args.tta,
                 allow_train_fold=args.allow_train_fold, backend=args.backend,
                 sources=args.sources, mc_dropout=args.mc_dropout)
    what = f"{m.split.patients} cases" if m.cases is not None else \
        f"{m.split.slices} slices, {m.split.patients} patients"
    table = Table(title=f"fold {fold} ({m.fold_role}): {what}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows: list[tuple[str, float]] = []
    if (c := m.classification) is not None:
        rows += [("accuracy", c.accuracy), ("macro-F1", c.macro_f1)]
    if (s := m.segmentation) is not None:
        rows += [("Dice (tumour slices)", s.dice_mean_tumour), ("Dice (pooled)", s.dice_pooled),
                 ("IoU (tumour slices)", s.iou_mean_tumour)]
    if (cases := m.cases) is not None:
        rows += [(f"{k.replace('_', ' ')} (mean over cases)", cases.summary[k].mean)
                 for k in ("WT_dice", "TC_dice", "ET_dice", "WT_hd95", "TC_hd95", "ET_hd95")
                 if k in cases.summary]
    if (u := m.uncertainty) is not None:
        rows += [("MC-dropout mutual information (mean)", u.mean_mutual_information)]
        if u.error_auroc is not None:
            rows += [("AUROC, uncertainty flags wrong answers", u.error_auroc)]
    for name, value in rows:
        table.add_row(name, f"{value:.3f}")
    Console().print(table)
    print(f"report: {out / 'report.html'}\nmetrics: {out / 'metrics.json'}")
    return 0
