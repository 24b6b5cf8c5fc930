"""Weight-space interpolation of two related models (WiSE-FT, Wortsman et al. 2022):
``(1 - alpha) * BASE + alpha * OTHER`` for the named parts, the rest kept from BASE; a
one-mask OTHER head is mixed into BASE's first mask output. The result keeps BASE's card
(calibration included, so recalibrate before use) with the new weights' hash. This is how the
trade-off in docs/trust.md ("Interpolating towards the figshare-only model") was measured:

    python scripts/interpolate_weights.py --alpha 0.3 --out /tmp/wise-0.3
    tumorscope evaluate --checkpoint /tmp/wise-0.3 --fold 1 --out /tmp/wise-0.3/eval-fold1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from tumorscope.checkpoint.store import checkpoint_paths, read_card, save_checkpoint
from tumorscope.errors import TumorscopeError


def interpolate(base: dict[str, torch.Tensor], other: dict[str, torch.Tensor], alpha: float,
                parts: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """BASE's tensors, those under ``parts`` moved ``alpha`` of the way to OTHER's (same name
    and shape; a mask head of another width mixes into output 0)."""
    mixed = {}
    for name, tensor in base.items():
        theirs = other.get(name)
        if not name.startswith(parts) or theirs is None or not tensor.is_floating_point():
            mixed[name] = tensor
            continue
        ours, theirs = tensor.float().clone(), theirs.float()
        if ours.shape == theirs.shape:
            ours = (1 - alpha) * ours + alpha * theirs
        elif theirs.shape[0] == 1 and ours.shape[1:] == theirs.shape[1:]:  # one mask vs M
            ours[0] = (1 - alpha) * ours[0] + alpha * theirs[0]
        mixed[name] = ours  # other shapes: BASE's, unchanged
    return mixed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, default=Path("models/default"))
    p.add_argument("--other", type=Path, default=Path("models/figshare"))
    p.add_argument("--alpha", type=float, required=True, help="0: BASE, 1: OTHER")
    p.add_argument("--parts", nargs="+", default=["encoder", "decoder", "segmentation_head"])
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if not 0 <= args.alpha <= 1:
        raise TumorscopeError("--alpha", f"{args.alpha} is not between 0 and 1")
    card = read_card(args.base)
    read_card(args.other)
    base = load_file(str(checkpoint_paths(args.base)[0]))
    other = load_file(str(checkpoint_paths(args.other)[0]))
    mixed = interpolate(base, other, args.alpha, tuple(args.parts))
    save_checkpoint(args.out, mixed, card.model_copy(update={
        "name": f"{card.name}-wise{args.alpha:g}"}), half=card.weights_dtype == "float16",
        full_precision=("ood.",))
    print(f"{args.out}: {1 - args.alpha:g} x {args.base} + {args.alpha:g} x {args.other} "
          f"({', '.join(args.parts)})")


if __name__ == "__main__":
    try:
        main()
    except TumorscopeError as err:  # one line naming the file and the problem
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
