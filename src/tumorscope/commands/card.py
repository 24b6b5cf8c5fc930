"""``tumorscope card``: a Markdown model card from a model's card and its ``metrics.json``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``card`` sub-command."""
    p = sub.add_parser("card", help="write a Markdown model card from a card and metrics.json")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--metrics", type=Path, required=True, help="metrics.json of evaluate")
    p.add_argument("--command", dest="reproduce", default="", help="command that produced it")
    p.add_argument("--cv", type=Path, default=None, metavar="CV_DIR",
                   help="a `tumorscope cv` output folder: its per-fold table is appended")
    p.add_argument("--cv-command", default="", help="the cv command that produced it")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Render and write the Markdown card."""
    from tumorscope.checkpoint.store import read_card
    from tumorscope.evaluation.result import read_result
    from tumorscope.io.writers import write_atomic
    from tumorscope.tasks.registry import get_task

    card = read_card(args.checkpoint)
    render = get_task(card.task, "model card task").load("card_markdown")
    text = render(card, read_result(args.metrics), args.reproduce)
    if args.cv is not None:
        from tumorscope.experiments.cv import collect, cv_markdown, read_plan

        text += "\n" + cv_markdown(collect(args.cv, read_plan(args.cv)), args.cv_command)
    write_atomic(args.out, lambda p: p.write_text(text, encoding="utf-8"))
    print(f"model card written to {args.out}")
    return 0
