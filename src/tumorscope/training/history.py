"""A run's logged metrics across interruptions.

Lightning's CSV logger writes ``csv/metrics.csv`` and starts it afresh when a run resumes, so
before resuming the old file is moved to ``metrics-history/`` (leaving ``csv/`` empty, as the
logger wants it); :func:`read_run_metrics` stitches the parts back, dropping steps of an
earlier part that were replayed after its checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

HISTORY = "metrics-history"
CSV_DIR = "csv"


def archive_metrics(run_dir: Path) -> Path | None:
    """Move the run's ``metrics.csv`` into the history folder (before a resume)."""
    (run_dir / CSV_DIR / "hparams.yaml").unlink(missing_ok=True)  # rewritten by the logger
    target = None
    for current in _current_logs(run_dir):
        folder = run_dir / HISTORY
        folder.mkdir(exist_ok=True)
        target = folder / f"{len(list(folder.glob('*.csv'))):03d}.csv"
        current.rename(target)
    return target


def _current_logs(run_dir: Path) -> list[Path]:
    """The live CSV log (and, for runs made before ``csv/`` existed, the old top-level one)."""
    return [p for p in (run_dir / "metrics.csv", run_dir / CSV_DIR / "metrics.csv") if p.is_file()]


def read_run_metrics(run_dir: Path) -> pd.DataFrame:
    """All logged rows of a run in step order, across resumes (empty frame if none)."""
    parts = [*sorted((run_dir / HISTORY).glob("*.csv")), *_current_logs(run_dir)]
    frames = [pd.read_csv(p) for p in parts if p.is_file() and p.stat().st_size > 0]
    if not frames:
        return pd.DataFrame()
    kept = []
    for i, frame in enumerate(frames):
        later = [f["step"].min() for f in frames[i + 1:] if "step" in f and len(f)]
        kept.append(frame[frame["step"] < min(later)] if later else frame)
    return pd.concat(kept, ignore_index=True)
