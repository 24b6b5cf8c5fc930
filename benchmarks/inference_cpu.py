"""CPU inference benchmark: naive eager PyTorch (the original projects' way) vs optimised
PyTorch vs ONNX Runtime, measured in one run on the same machine and the same input.

    python benchmarks/inference_cpu.py --checkpoint models/default --out docs/benchmarks.md

Latency: one 512x512 slice, batch 1, preprocessing and mask upsampling included (median and
p95 over repeats after warm-up). Throughput: batch 16. Peak memory: max RSS of a fresh process
per back end. Each back end runs in its own subprocess.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from doc import update_section

BACKENDS = ["naive-eager", "optimised-torch", "onnxruntime"]


def _timed(fn, repeats: int) -> list[float]:
    for _ in range(3):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def measure(backend: str, checkpoint: Path, repeats: int, threads: int) -> dict[str, float]:
    """Run in a fresh process: latency (batch 1) and throughput (batch 16) of one back end."""
    import torch

    from tumorscope.checkpoint.store import load_checkpoint
    from tumorscope.inference.joint import JointInferer
    from tumorscope.inference.predictor import Predictor
    from tumorscope.inference.runtime import OnnxRunner, TorchRunner
    from tumorscope.io import Scan
    from tumorscope.tasks import get_task

    spec = get_task("joint")
    task_outputs = spec.outputs + spec.optional_outputs

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    slice_ = rng.integers(0, 255, (1, 512, 512)).astype(np.uint8)
    batch = [rng.integers(0, 255, (1, 512, 512)).astype(np.uint8) for _ in range(16)]
    model, card = load_checkpoint(checkpoint)
    if backend == "naive-eager":
        class Naive:  # torch.no_grad, NCHW, float32: how the original scripts ran inference
            name = "naive"
            outputs = task_outputs

            def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
                with torch.no_grad():
                    values = model(torch.from_numpy(x))
                return {n: v.numpy() for n, v in zip(task_outputs, values, strict=False)}
        runner = Naive()
    elif backend == "optimised-torch":
        runner = TorchRunner(model, spec.outputs, optional=spec.optional_outputs)
    else:
        runner = OnnxRunner(Path(checkpoint) / "model.onnx", threads=threads)
    inferer = cast(JointInferer, Predictor(runner, card).inferer)
    scan = Scan(slice_.astype(np.float32), None, Path("bench.png"), "png", ("gray",))
    # end to end: preprocessing, network, calibrated decision, mask upsampling, input checks
    lat = _timed(lambda: inferer.predict_scan(scan), repeats)
    thr = _timed(lambda: inferer.predict_arrays(batch, batch_size=16), max(3, repeats // 5))
    return {"latency_ms_p50": 1000 * statistics.median(lat),
            "latency_ms_p95": 1000 * float(np.percentile(lat, 95)),
            "throughput_img_s": 16 / statistics.median(thr),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("models/default"))
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write a Markdown table here")
    parser.add_argument("--one", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.checkpoint, args.repeats, args.threads)))
        return
    if not (args.checkpoint / "model.onnx").is_file():
        subprocess.run([sys.executable, "-m", "tumorscope.cli", "export", "--checkpoint",
                        str(args.checkpoint), "--format", "onnx"], check=True)
    results = {}
    for backend in BACKENDS:
        out = subprocess.run([sys.executable, __file__, "--one", backend, "--checkpoint",
                              str(args.checkpoint), "--repeats", str(args.repeats),
                              "--threads", str(args.threads)],
                             check=True, capture_output=True, text=True)
        results[backend] = json.loads(out.stdout.strip().splitlines()[-1])
        print(backend, results[backend], flush=True)
    base = results["naive-eager"]["latency_ms_p50"]
    rows = "\n".join(
        f"| {b} | {r['latency_ms_p50']:.1f} | {r['latency_ms_p95']:.1f} | "
        f"{base / r['latency_ms_p50']:.2f}x | {r['throughput_img_s']:.1f} | "
        f"{r['peak_rss_mb']:.0f} |"
        for b, r in results.items())
    cpu = platform.processor() or platform.machine()
    text = f"""## CPU inference (`benchmarks/inference_cpu.py`)

Machine: {cpu}, {args.threads} threads, Python {platform.python_version()}.
Model: `{args.checkpoint}`. Input: 512x512 slice; preprocessing (scale, resize, normalise) and
mask upsampling to 512x512 included; batch 1 is the whole prediction (calibrated
decision, out-of-distribution verdict with its input checks).
{args.repeats} timed repeats after 3 warm-up runs.

Command: `python benchmarks/inference_cpu.py --checkpoint {args.checkpoint} --out {args.out}`

| back end | p50 ms (batch 1) | p95 ms | speed-up | img/s (batch 16) | peak RSS MB |
| --- | --- | --- | --- | --- | --- |
{rows}

naive-eager: `torch.no_grad()`, NCHW float32, as the original projects ran inference.
optimised-torch: `inference_mode`, channels-last, thread count set. onnxruntime: the exported
`model.onnx` with all graph optimisations, CPU execution provider.
"""
    if args.out:
        update_section(args.out, "inference-cpu", text)
    print(text)


if __name__ == "__main__":
    main()
