"""Each benchmark owns one marked section of docs/benchmarks.md and replaces only that."""

from __future__ import annotations

import re
from pathlib import Path

HEADER = "# Benchmarks\n\nEach section is written by the script it names, measured against its " \
    "baseline in the same run on the same machine.\n"


def update_section(path: Path, name: str, text: str) -> Path:
    """Replace (or append) the section between ``<!-- name -->`` markers."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{start}\n{text.strip()}\n{end}\n"
    current = path.read_text(encoding="utf-8") if path.is_file() else HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    updated = pattern.sub(lambda _: block, current) if start in current else \
        current.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(updated, encoding="utf-8")
    return path
