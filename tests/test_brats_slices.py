"""The BraTS slice export: complete or absent, also when two processes export at once."""

from __future__ import annotations

import csv
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fixtures import write_brats_case
from tumorscope.data import brats_slices
from tumorscope.data.brats_slices import SliceExport, export_slices
from tumorscope.errors import ScanReadError
from tumorscope.io.brats import BratsCase


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "meta.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_concurrent_exports_do_not_collide(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Two exports of one dataset running together both return a complete export: neither
    deletes the other's folder in progress (each has its own), and the loser keeps the
    winner's result."""
    root = tmp_path / "brats"
    for i in range(2):
        write_brats_case(root / f"Case_{i:03d}", case_id=f"Case_{i:03d}")
    settings = SliceExport(per_plane=3)
    both_running = threading.Barrier(2, timeout=30)
    folders: set[Path] = set()
    real = brats_slices.export_case

    def export_together(case: BratsCase, out: Path, s: SliceExport) -> list[dict[str, object]]:
        if out not in folders:  # each export's first case waits for the other export
            folders.add(out)
            both_running.wait()
        return real(case, out, s)

    monkeypatch.setattr(brats_slices, "export_case", export_together)
    out = tmp_path / "cache" / "export"
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: export_slices(root, out, settings), range(2)))
    assert results == [out, out]
    assert len(folders) == 2, "both exports ran, each in its own folder"
    rows = _rows(out)
    assert {r["case"] for r in rows} == {"Case_000", "Case_001"}
    for row in rows:
        assert (out / "images" / f"{row['id']}.png").is_file()
        assert (out / "masks" / f"{row['id']}.png").is_file()
    assert [p.name for p in out.parent.iterdir()] == ["export"], "no partial folder left"


def test_failed_export_leaves_nothing(tmp_path: Path) -> None:
    """A dataset without any segmented case raises and leaves neither export nor partial."""
    root = tmp_path / "brats"
    write_brats_case(root / "Case_000", skip=("seg",))
    out = tmp_path / "cache" / "export"
    with pytest.raises(ScanReadError, match="no BraTS case folder with a segmentation"):
        export_slices(root, out, SliceExport(per_plane=3))
    assert list(out.parent.iterdir()) == []
