"""What a dataset is, before any pixels are read: a list of slice records and class names."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Record:
    """One annotated 2D slice on disk.

    ``mask`` is None when the annotation lives in the image file itself (figshare ``.mat``)
    or the slice has none. ``label`` is a 0-based class index. ``fold`` is set when the
    dataset ships its own patient-level split. ``position`` orders a patient's slices into a
    volume (LGG). ``synthesis`` names how the pixels are derived from the file (``"mirror"``:
    a pseudo-healthy slice, see ``transforms/pseudo_healthy.py``); None for the file as it is.
    """

    id: str
    image: Path
    mask: Path | None
    label: int
    patient: str
    fold: int | None = None
    position: int | None = None  # slice number within the patient's volume, when known
    channel: int | None = None
    source: str | None = None
    synthesis: str | None = None

    @property
    def outline(self) -> str | None:
        """The dataset whose outline definition this slice's mask follows: its source, or
        the source it was derived from (``figshare-mirror`` -> ``figshare``)."""
        if self.synthesis and self.source:
            return self.source.removesuffix(f"-{self.synthesis}")
        return self.source


@dataclass
class DatasetIndex:
    """All records of a dataset plus its class names and provenance."""

    name: str
    root: Path
    classes: list[str]
    records: list[Record]
    info: dict[str, object] = field(default_factory=dict)

    @property
    def patients(self) -> list[str]:
        return sorted({r.patient for r in self.records})

    def class_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.classes, 0)
        for r in self.records:
            counts[self.classes[r.label]] += 1
        return counts
