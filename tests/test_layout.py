"""The package's layout is its architecture: imports point one way (README, "Layout").

commands -> launch -> (training, inference, data, models, optim) -> reporting, and everything may use
the shared ground (errors, files, runs, checkpoint, devices, instantiate). Read from the source
with ast, so a lazy import inside a function counts as much as one at the top.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nntrain"

# For each part of the package, the parts it must never import.
# launch (run directories, resume, resolvers) sits between the commands and the rest: the
# commands and nntrain's SLURM launcher use it, and it uses everything but the commands.
FORBIDDEN = {
    "models": {"commands", "launch", "training", "inference", "reporting", "optim"},
    "data": {"commands", "launch", "training", "inference", "reporting", "models", "optim"},
    "optim": {"commands", "launch", "training", "inference", "reporting", "data"},
    "reporting": {"commands", "launch", "training", "models", "optim"},
    "inference": {"commands", "launch", "training", "optim"},
    "training": {"commands", "launch"},
    "launch": {"commands"},
    "commands": set(),
    "shared": {
        "commands",
        "launch",
        "training",
        "inference",
        "reporting",
        "data",
        "models",
        "optim",
    },
}
# tasks: what a classification and a regression each own (loss, metrics, monitors), read by
# data, training, inference, commands and the sweeper alike.
SHARED = {
    "errors",
    "files",
    "runs",
    "checkpoint",
    "devices",
    "instantiate",
    "schema",
    "tasks",
    "__init__",
}


def part_of(module: str) -> str:
    """models, data, ..., or shared for the top-level modules (nntrain.errors, ...);
    `python -m nntrain` (__main__) is a command."""
    first = module.split(".")[1] if module.count(".") else ""
    if first == "__main__":
        return "commands"
    return "shared" if first in SHARED or not first else first


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from nntrain import files` imports nntrain.files
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("nntrain.")}


def modules() -> list[tuple[str, Path]]:
    return [
        (".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts), path)
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_imports_point_one_way(module, path):
    own = part_of(module)
    wrong = sorted(
        name
        for name in imported_modules(path)
        if name.count(".") >= 1
        and name.split(".")[1] not in ("configs",)
        and part_of(name) in FORBIDDEN[own]
        and (name.split(".")[1] not in SHARED or part_of(name) != "shared")
    )
    assert not wrong, f"{module} ({own}) must not import {wrong}"


def test_the_package_is_grouped_by_role():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert set(top) <= SHARED | {"__main__"}, (
        f"top-level modules beyond the shared ground: {set(top) - SHARED}"
    )
    folders = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert folders == [
        "commands",
        "data",
        "inference",
        "launch",
        "models",
        "optim",
        "reporting",
        "training",
    ]
