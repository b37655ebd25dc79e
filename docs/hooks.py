"""MkDocs hooks of nntrain's manual (registered under `hooks:` in mkdocs.yml).

The page reference.md, "Configuration reference", is generated from the settings schema while the
manual builds (scripts/config_reference.py writes it; `python scripts/config_reference.py` prints
the same text), so it always matches the code. It is no file in pages/."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from mkdocs.structure.files import File, Files

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "config_reference.py"
REFERENCE = "reference.md"


def generator() -> ModuleType:
    """scripts/config_reference.py as a module (scripts/ is no package), loaded afresh."""
    spec = importlib.util.spec_from_file_location("nntrain_config_reference", SCRIPT)
    assert spec is not None and spec.loader is not None, SCRIPT
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_files(files: Files, config: Any) -> Files:
    content = generator().reference_markdown()
    files.append(File.generated(config, REFERENCE, content=content))
    return files
