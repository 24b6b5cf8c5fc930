"""The import graph points one way (docs/architecture.md): a module may import its own layer
or lower ones, Lightning stays in tasks/ and training/, and only those name a task class."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tumorscope"

# lowest first; the longest matching prefix decides a module's layer
LAYERS: list[list[str]] = [
    ["errors", "config", "metrics", "brats_metrics", "uncertainty", "progress", "locations",
     "logs", "tasks.registry", "tasks"],
    ["io"],
    ["transforms", "reporting"],
    ["data"],
    ["models", "synthesis"],
    ["checkpoint"],
    ["tasks.optim", "tasks.rng", "tasks.stages", "tasks.base", "tasks.joint", "tasks.brats",
     "tasks.classify"],
    ["training"],
    ["inference"],
    ["evaluation"],
    ["experiments", "augment_preview", "demo", "explore", "serve", "commands", "cli",
     "__init__"],
]
LIGHTNING_ALLOWED = ("tasks.optim", "tasks.rng", "tasks.base", "tasks.joint", "tasks.brats",
                     "tasks.classify", "training")


def _name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _layer(module: str) -> int:
    best, rank = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank >= 0, f"{module} is in no layer; add it to LAYERS"
    return rank


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


MODULES = {_name(p): p for p in sorted(SRC.rglob("*.py"))}


def test_imports_point_down_the_layers() -> None:
    upward = set()
    for module, path in MODULES.items():
        for imported in _imports(path):
            if not imported.startswith("tumorscope."):
                continue
            target = imported.removeprefix("tumorscope.")
            if target not in MODULES and target.rsplit(".", 1)[0] in MODULES:
                target = target.rsplit(".", 1)[0]  # `from pkg.mod import name`
            if target in MODULES and _layer(target) > _layer(module):
                upward.add(f"{module} -> {target}")
    assert not upward, sorted(upward)


def test_lightning_stays_in_tasks_and_training() -> None:
    offenders = [m for m, p in MODULES.items()
                 if any(i == "lightning" or i.startswith(("lightning.", "pytorch_lightning"))
                        for i in _imports(p)) and not m.startswith(LIGHTNING_ALLOWED)]
    assert not offenders, offenders


def test_only_tasks_and_training_name_a_task_class() -> None:
    named = [m for m, p in MODULES.items() if "JointTask" in p.read_text(encoding="utf-8")
             and not m.startswith(("tasks", "training"))]
    assert not named, named
