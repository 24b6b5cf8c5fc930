"""Predictor: load a checkpoint once, predict many scans (no Lightning needed).

It picks the back end (PyTorch or ONNX Runtime) and hands the scan to the inferer that the
task registry names for the card's task (e.g. inference/joint.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from tumorscope.checkpoint.card import ModelCard
from tumorscope.checkpoint.store import checkpoint_paths, load_checkpoint, read_card
from tumorscope.errors import CheckpointError, ScanReadError, TumorscopeError
from tumorscope.inference.prediction import Prediction
from tumorscope.inference.runtime import (
    ONNX_NAME,
    MCDropoutRunner,
    OnnxRunner,
    Runner,
    TorchRunner,
    choose_backend,
)
from tumorscope.io import Scan, read_scan
from tumorscope.tasks.registry import get_task


class Inferer(Protocol):
    """A task's inference: scan in, :class:`Prediction` out."""

    classes: list[str]

    def predict_scan(self, scan: Scan, slice_index: int | None = None) -> Prediction: ...


MIN_SIDE = 8


def check_content(scan: Scan) -> None:
    """A one-line error for an image too small to be a scan or with no content at all."""
    height, width = scan.array.shape[1:3]
    if min(height, width) < MIN_SIDE:
        raise ScanReadError(scan.path, f"image is {height}x{width} px: too small to be an MRI "
                            f"slice (at least {MIN_SIDE}x{MIN_SIDE})")
    low, high = float(scan.array.min()), float(scan.array.max())
    if low == high:
        raise ScanReadError(scan.path, f"the image has no content (every pixel is {low:g})")


def check_fits(scan: Scan, card: ModelCard) -> None:
    """Refuse one modality of a BraTS case for a model that takes single slices: run slice by
    slice it would answer confidently about a sequence and orientation it never saw."""
    from tumorscope.io.brats import modality_of

    found = modality_of(scan.path.name) if scan.path is not None else None
    if found is not None and card.task != "brats":
        raise ScanReadError(scan.path, f"is the {found[1]} volume of a BraTS case; model "
                            f"{card.id} takes single 2D slices, not four-modality cases: "
                            "segment the case with a BraTS model (tumorscope predict CASE_DIR "
                            "--checkpoint models/brats)")


class Predictor:
    """Loads the model once; safe for concurrent ``predict_*`` calls (no shared state is
    mutated). Runs on eager PyTorch or ONNX Runtime (``backend``)."""

    def __init__(self, runner: Runner, card: ModelCard, threshold: float | None = None,
                 tta: bool = False, outline: str | None = None) -> None:
        self.runner = runner
        self.card = card
        self.spec = get_task(card.task, "model card task")
        if outline is not None and not card.model.get("outlines"):
            raise TumorscopeError("--outline", f"model {card.id} has one outline; --outline "
                                  "picks one of a model trained with model.outlines")
        chosen = {"outline": outline} if outline is not None else {}
        self.inferer: Inferer = self.spec.load("inferer")(runner, card, threshold, tta, **chosen)
        self.classes: list[str] = list(card.classes)
        self.model_id = card.id

    @property
    def backend(self) -> str:
        return self.runner.name

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", backend: str = "auto",
                        mc_dropout: int = 0, **kw: Any) -> Predictor:
        """Load ``model.safetensors`` (torch) or ``model.onnx`` beside it (onnx); 'auto'
        prefers ONNX Runtime on CPU when the export exists and onnxruntime is installed.
        ``mc_dropout``: that many Monte Carlo dropout passes (PyTorch only)."""
        weights, _ = checkpoint_paths(path)
        onnx_path = weights.with_name(ONNX_NAME)
        if mc_dropout and backend == "onnx":
            raise TumorscopeError("--mc-dropout", "Monte Carlo dropout runs on the torch "
                                  "backend only (--backend torch)")
        chosen = "torch" if mc_dropout else choose_backend(
            backend if device == "cpu" else "torch", onnx_path)
        if chosen == "onnx":
            card, runner = read_card(path), OnnxRunner(onnx_path)
            wanted = get_task(card.task, "model card task").outputs
            if set(wanted) - set(runner.outputs):
                raise CheckpointError(onnx_path, f"outputs {list(runner.outputs)} lack the "
                                      f"task's {list(wanted)}; export it again")
            return cls(runner, card, **kw)
        model, card = load_checkpoint(path)
        spec = get_task(card.task, "model card task")
        torch_runner = MCDropoutRunner(model, spec.outputs, mc_dropout, device,
                                       spec.optional_outputs) if mc_dropout \
            else TorchRunner(model, spec.outputs, device, spec.optional_outputs)
        return cls(torch_runner, card, **kw)

    def predict_scan(self, scan: Scan, slice_index: int | None = None) -> Prediction:
        """Predict a 2D scan, one slice of a volume, or a whole volume (as the task does).

        Images without content (too small, or every pixel the same) are refused rather than
        given a confident-looking answer.
        """
        check_content(scan)
        check_fits(scan, self.card)
        return self.inferer.predict_scan(scan, slice_index)

    def self_check(self) -> None:
        """Predict a synthetic slice once: the network runs, its outputs are the task's and
        its probabilities finite, or a one-line error (before a server says it is ready)."""
        import numpy as np

        rng = np.random.default_rng(0)
        channels = int(self.card.preprocessing.get("in_channels", 1))
        probe = Scan(rng.uniform(0, 255, (channels, 64, 64)).astype(np.float32), None,
                     Path("self-check"), "png", tuple(f"c{i}" for i in range(channels)))
        own_check = getattr(self.inferer, "self_check", None)  # tasks whose input is no slice
        try:
            if own_check is not None:
                own_check()
                return
            pred = self.inferer.predict_scan(probe)
        except (KeyError, ValueError, RuntimeError) as err:
            raise CheckpointError(self.model_id, f"the model cannot predict ({type(err).__name__}"
                                  f": {str(err).splitlines()[0] if str(err) else ''})") from None
        if not all(np.isfinite(p) for p in pred.probabilities.values()):
            raise CheckpointError(self.model_id, "the model predicts non-finite probabilities")

    def predict_file(self, path: str | Path, slice_index: int | None = None) -> Prediction:
        """Read any supported file and predict it."""
        return self.predict_scan(read_scan(path), slice_index)
