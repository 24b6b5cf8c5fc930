"""One entry point: ``tumorscope <command>`` (train, evaluate, predict, export, ...).

Each sub-command lives in its own module under ``tumorscope.commands``; its
``add_parser`` builds the parser and sets ``handler``, which ``main`` calls.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from tumorscope import __version__
from tumorscope.commands import (
    augment,
    calibrate,
    card,
    check_data,
    compare,
    cv,
    demo,
    embed,
    evaluate,
    explore,
    export,
    info,
    lgg,
    pack,
    predict,
    prepare,
    realism,
    results,
    robustness,
    serve,
    synthesize,
    train,
)
from tumorscope.errors import TumorscopeError
from tumorscope.logs import configure as configure_logging

Handler = Callable[[argparse.Namespace], int]

# the order of ``tumorscope --help``
SUBCOMMANDS = (train, evaluate, cv, calibrate, predict, export, card, serve, results, compare,
               robustness, embed, augment, demo, info, lgg, explore, check_data, prepare,
               pack, synthesize, realism)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(prog="tumorscope", description="Brain-tumour MRI toolkit: "
                                     "classify, segment, evaluate, predict.")
    parser.add_argument("--version", action="version", version=f"tumorscope {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; user errors print one line and exit 2 (no traceback)."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    handler: Handler = args.handler
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
