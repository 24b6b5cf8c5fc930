"""Seconds and peak memory per BraTS case (240x240x155, four modalities) on this machine's
CPU, end to end: read the NIfTI files, preprocess, infer, write the segmentation NIfTI.

Each variant runs in its own process (peak RSS is that process's), against baselines in the
same run:
- ``tumorscope``: the model given (cropped to the brain, its card's spacing, our inferer);
- ``monai-plain``: the same network through MONAI's ``sliding_window_inference`` with its
  default settings (overlap 0.25, constant blending) on the full-resolution volume, or
  ``SliceInferer`` over every axial slice for a 2D model: what a MONAI user writes first;
- ``monai-bundle``: MONAI's BraTS bundle network (SegResNet, 16 initial filters, 4 -> 3
  channels) on 128^3 windows with overlap 0.25 at full resolution (untrained: only speed is
  measured; weights do not change the cost).

    python benchmarks/brats_cpu.py --checkpoint models/brats --case ../shared/data/brats/X \
        --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from doc import update_section

VARIANTS = ("tumorscope", "monai-plain", "monai-bundle")


def _write(labels: object, case: object, out: Path) -> None:
    from tumorscope.io.brats import write_segmentation

    write_segmentation(labels, case, out)  # type: ignore[arg-type]


def run_variant(variant: str, checkpoint: Path, case_dir: Path, out: Path) -> dict[str, float]:
    """One variant end to end in this process; seconds and peak RSS."""
    import numpy as np
    import torch

    from tumorscope.io.brats import MODALITIES, labels_from_regions, read_case

    torch.set_num_threads(os.cpu_count() or 1)
    # the model is loaded before the clock starts (a server or a batch job loads it once)
    if variant == "tumorscope":
        from tumorscope.inference.predictor import Predictor

        predictor = Predictor.from_checkpoint(checkpoint, backend="torch")
    else:
        from monai.inferers import SliceInferer, sliding_window_inference
        from monai.transforms import NormalizeIntensity

        if variant == "monai-plain":
            from tumorscope.checkpoint.store import load_checkpoint

            model, card = load_checkpoint(checkpoint)
            channels = [MODALITIES.index(m) for m in card.preprocessing["modalities"]]
            roi = tuple(int(n) for n in card.model["patch_size"])
            two_d = card.model.get("family") == "2d"
        else:
            from monai.networks.nets import SegResNet

            model = SegResNet(blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1), init_filters=16,
                              in_channels=4, out_channels=3, dropout_prob=0.2)
            channels, roi, two_d = list(range(4)), (128, 128, 128), False
        model.eval()
    start = time.perf_counter()
    case = read_case(case_dir)
    if variant == "tumorscope":
        labels = predictor.inferer.predict_case(case).labels  # type: ignore[attr-defined]
    else:
        image = NormalizeIntensity(nonzero=True, channel_wise=True)(
            torch.from_numpy(case.image[channels]))
        with torch.inference_mode():
            x = torch.as_tensor(image)[None].float()
            if two_d:
                logits = SliceInferer(roi_size=case.shape[:2], spatial_dim=2)(x, model)
            else:
                logits = sliding_window_inference(x, roi, 1, model, overlap=0.25)
        probs = torch.sigmoid(torch.as_tensor(logits))[0].numpy() > 0.5
        labels = labels_from_regions(probs[0], probs[1], probs[2])
    _write(np.asarray(labels), case, out)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("models/brats"))
    parser.add_argument("--case", type=Path, required=True, help="a BraTS case folder")
    parser.add_argument("--variant", choices=VARIANTS, help="(internal) run one variant")
    parser.add_argument("--skip", nargs="*", default=[], choices=VARIANTS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.variant:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_variant(args.variant, args.checkpoint, args.case,
                                         Path(tmp) / "seg.nii.gz")))
        return
    rows = {}
    for variant in VARIANTS:
        if variant in args.skip:
            continue
        res = subprocess.run([sys.executable, __file__, "--variant", variant, "--checkpoint",
                              str(args.checkpoint), "--case", str(args.case)],
                             capture_output=True, text=True, check=True)
        rows[variant] = json.loads(res.stdout.strip().splitlines()[-1])
        print(variant, rows[variant], flush=True)
    base = rows.get("monai-bundle", {}).get("seconds")
    table = "\n".join(
        f"| {v} | {r['seconds']:.1f} | {r['peak_mb']:.0f} | "
        f"{(base / r['seconds']):.1f}x |" if base else
        f"| {v} | {r['seconds']:.1f} | {r['peak_mb']:.0f} | |" for v, r in rows.items())
    from tumorscope.checkpoint.store import read_card

    card = read_card(args.checkpoint)
    family = card.model.get("family")
    text = f"""## BraTS: seconds per case on the CPU (`benchmarks/brats_cpu.py`)

Machine: {platform.machine()}, {os.cpu_count()} CPUs, PyTorch eager. Case
`{args.case.name}` (240x240x155, four modalities), end to end: read the NIfTI files,
preprocess, infer, write the segmentation NIfTI (the model is loaded once, before the
clock starts); one process per row (peak = its resident memory). Model `{card.id}`
({family} {card.model.get('arch')}); the MONAI rows are the baselines described in the
script, run in the same session.

Command: `python benchmarks/brats_cpu.py --checkpoint {args.checkpoint} --case {args.case}`

| variant | seconds | peak MB | speed vs MONAI bundle |
| --- | --- | --- | --- |
{table}
"""
    print(text)
    if args.out:
        update_section(args.out, "brats-cpu", text)


if __name__ == "__main__":
    main()
