"""Training-step speed on the CPU: fp32 (baseline) vs bf16 autocast (Lightning's
``trainer.precision=bf16-mixed``), measured in one run, interleaved, on the same model and data.

    python benchmarks/train_precision_cpu.py --out docs/benchmarks.md

One step = forward, the joint loss, backward and an AdamW update of the default recipe's model
(UNet + EfficientNet-Lite0, scSE, classification head), random weights and images. Rounds
alternate between the two precisions so that both see the same machine load.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from doc import update_section

REPO = Path(__file__).resolve().parents[1]


def _cpu_flags() -> str:
    try:
        words = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return "unknown"
    found = [f for f in ("avx512_bf16", "amx_bf16") if f in words]
    return ", ".join(found) or "no bf16 instructions"


def _step_fn(size: int, batch: int, precision: str):  # type: ignore[no-untyped-def]
    from tumorscope.config import load_config
    from tumorscope.models import joint_from_config

    cfg = load_config(REPO / "configs/figshare/joint-lite0.yaml",
                      ["model.encoder_weights=none", f"model.input_size={size}"])
    torch.manual_seed(0)
    model = joint_from_config(cfg.model.model_dump(), 3, load_pretrained=False)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, size, size)
    mask = (torch.rand(batch, 1, size, size) > 0.9).float()
    label = torch.randint(0, 3, (batch,))

    def step() -> float:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed" \
            else contextlib.nullcontext()
        with ctx:
            seg, cls = model(x)
            loss = F.binary_cross_entropy_with_logits(seg.float(), mask) + \
                F.cross_entropy(cls.float(), label)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--out", type=Path, help="update this Markdown file's section")
    args = parser.parse_args()
    precisions = ["32", "bf16-mixed"]
    steps = {p: _step_fn(args.size, args.batch, p) for p in precisions}
    for p in precisions:  # warm-up
        steps[p]()
    times: dict[str, list[float]] = {p: [] for p in precisions}
    for r in range(args.rounds):
        for p in precisions if r % 2 == 0 else precisions[::-1]:
            for _ in range(args.steps):
                t0 = time.perf_counter()
                steps[p]()
                times[p].append(time.perf_counter() - t0)
        print(f"round {r + 1}/{args.rounds}", flush=True)
    base = statistics.median(times["32"])
    rows = []
    for p in precisions:
        med = statistics.median(times[p])
        rows.append(f"| {p} | {1000 * med:.0f} | {args.batch / med:.1f} | {base / med:.2f}x |")
    text = f"""## Training precision on the CPU (`benchmarks/train_precision_cpu.py`)

Machine: {platform.machine()}, {torch.get_num_threads()} threads, {_cpu_flags()}; torch
{torch.__version__}. Default recipe's model (UNet + EfficientNet-Lite0), {args.size} px,
batch {args.batch}; median of {args.rounds * args.steps} training steps per precision,
rounds interleaved.

Command: `python benchmarks/train_precision_cpu.py --size {args.size} --batch {args.batch}`

| precision | ms / step | images / s | speed vs fp32 |
| --- | --- | --- | --- |
""" + "\n".join(rows)
    print(text)
    if args.out:
        update_section(args.out, "train-precision-cpu", text)


if __name__ == "__main__":
    main()
