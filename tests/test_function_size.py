"""No function over 60 lines (issue 27: Trainer.__init__ had 83; issue 28 sets 60): a long function
is split into well-named helpers. Checked on every module of the package, the plugins and the
scripts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import nntrain

PACKAGE = Path(nntrain.__file__).parent
ROOT = PACKAGE.parent
MAX_LINES = 60
CHECKED = sorted(
    path
    for folder in ("nntrain", "hydra_plugins", "scripts")
    for path in (ROOT / folder).rglob("*.py")
)


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (lines := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_LINES
    ]


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_function_is_longer_than_60_lines(path):
    assert path.is_file(), path
    assert long_functions(path) == []
