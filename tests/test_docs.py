"""The manual (docs/) builds, and its runnable examples run as a user would type them.

A fenced block right after a line `<!-- runnable -->`, in README.md or docs/pages/*.md, is run
here: its commands in order, in a fresh directory, each expected to exit 0 (the convention is
described in docs/pages/development.md, "The manual").

The configuration reference (scripts/config_reference.py, a page of the manual through
docs/hooks.py) holds every setting of every option the schema declares."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import numpy as np
import pytest
from nntrain.configs import COMMAND_SETTINGS, SCHEMA_OPTIONS

from nntrain.schema import Settings, reference_rows, setting

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "docs" / "mkdocs.yml"
REFERENCE_SCRIPT = ROOT / "scripts" / "config_reference.py"
MARKED = [ROOT / "README.md", *sorted((ROOT / "docs" / "pages").glob("**/*.md"))]
MARKER = "<!-- runnable -->"
PROGRAMS = ("nntrain", "nntrain-eval", "nntrain-predict", "nntrain-export", "nntrain-lr-find")
# Appended to each command unless it sets the key itself: one epoch shows that a training
# command works, in seconds; the end-of-run figures (about 1.5 s a run) are test_figures.py's.
SMALL = {"nntrain": ("trainer.max_epochs=1", "trainer.report_images=false")}
# outputs/<date>/<time>-<name>, as the examples write a run directory: it stands for the newest run
# of that name the block made (the name itself may hold '-', so it ends at '/' or the argument's end).
RUN_DIR = re.compile(r"outputs/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d-([\w.-]+?)(?=/|$)")
SET_UP = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install . && nntrain",
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[dev]' && pytest",
)


@dataclass(frozen=True)
class Block:
    """A runnable block: where it is (every place, when repeated word for word) and its commands."""

    where: str
    commands: tuple[tuple[str, ...], ...]


def block_commands(lines: list[str]) -> tuple[tuple[str, ...], ...]:
    """The commands of a block's lines: comments and empty lines dropped, `\\` lines joined."""
    text = "\n".join(lines).replace("\\\n", " ")
    commands = (shlex.split(line, comments=True) for line in text.splitlines())
    return tuple(tuple(words) for words in commands if words)


def runnable_blocks(path: Path) -> list[tuple[str, tuple[tuple[str, ...], ...]]]:
    """(place, commands) of each block marked runnable in a Markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for number, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        start = next(i for i in range(number + 1, len(lines)) if lines[i].strip())
        where = f"{path.relative_to(ROOT)}:{start + 1}"
        if not lines[start].startswith("```"):
            raise ValueError(f"{where}: {MARKER} must come right before a fenced code block")
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
        found.append((where, block_commands(lines[start + 1 : end])))
    return found


def all_blocks() -> list[Block]:
    """Every runnable block of README.md and the pages; a block repeated word for word runs once."""
    places: dict[tuple[tuple[str, ...], ...], list[str]] = {}
    for path in MARKED:
        for where, commands in runnable_blocks(path):
            places.setdefault(commands, []).append(where)
    return [Block(" + ".join(where), commands) for commands, where in places.items()]


BLOCKS = all_blocks()


def newest_run(cwd: Path, name: str) -> Path:
    """The newest run directory named `name` under cwd/outputs (two in one second: `-2`, ...)."""
    pattern = re.compile(rf"\d\d-\d\d-\d\d-{re.escape(name)}(-\d+)?")
    runs = sorted(
        run
        for run in (cwd / "outputs").glob("*/*")
        if run.parent.name != "multirun" and pattern.fullmatch(run.name)
    )
    assert runs, f"no run named {name} under {cwd / 'outputs'}: the block must train it first"
    return runs[-1].relative_to(cwd)


def given(key: str, arguments: list[str]) -> bool:
    """Whether the command sets `key` itself."""
    return any(argument.startswith(f"{key}=") for argument in arguments)


def as_run(command: tuple[str, ...], cwd: Path) -> list[str]:
    """The command as the test runs it: the installed script, run paths resolved, small settings."""
    program, *arguments = command
    assert program in PROGRAMS, f"{program!r} is not a command the docs test runs: {PROGRAMS}"
    resolved = [
        RUN_DIR.sub(lambda match: str(newest_run(cwd, match.group(1))), argument)
        for argument in arguments
    ]
    # A setting the command gives itself is kept (a resumed run's own trainer.max_epochs).
    small = [s for s in SMALL.get(program, ()) if not given(s.split("=")[0], arguments)]
    script = Path(sys.executable).with_name(program)
    return [str(script), *resolved, *small]


def make_inputs(cwd: Path) -> None:
    """The files the examples read: customers.csv (target `bought`) and a folder of digit images."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from nntrain.data.tabular import Subscription

    Subscription().write_csv(cwd / "customers.csv")
    folder = cwd / "my_digits"
    folder.mkdir()
    for index, image in enumerate(load_digits().images[:4]):  # values 0..16
        pixels = (image * (255 / 16)).round().astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{index}.png")


@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
def test_a_runnable_block_runs(block: Block, tmp_path: Path) -> None:
    make_inputs(tmp_path)
    for command in block.commands:
        argv = as_run(command, tmp_path)
        done = subprocess.run(
            argv,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env=dict(os.environ),
            stdin=subprocess.DEVNULL,
        )
        typed = shlex.join(command)
        assert done.returncode == 0, (
            f"{block.where}: `{typed}` (run as `{shlex.join(argv[1:])}`) exited "
            f"{done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )


def test_every_command_has_a_runnable_example() -> None:
    programs = {command[0] for block in BLOCKS for command in block.commands}
    assert set(PROGRAMS) <= programs, f"no runnable example of {set(PROGRAMS) - programs}"
    assert sum(len(block.commands) for block in BLOCKS) >= 8
    assert any("-m" in command for block in BLOCKS for command in block.commands)  # a sweep


def test_the_set_up_commands_are_on_the_front_page_and_in_getting_started() -> None:
    # .ci/run installs the project as these say (pip install -e '.[dev]') and runs `pytest`.
    for page in (ROOT / "README.md", ROOT / "docs" / "pages" / "getting-started.md"):
        lines = page.read_text(encoding="utf-8").splitlines()
        assert all(command in lines for command in SET_UP), page


def test_the_manual_builds_strictly(tmp_path: Path) -> None:
    for module in ("mkdocs", "material"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(
                f"{module} is not installed (it is in the dev extra: pip install -e '.[dev]')"
            )
    site = tmp_path / "site"  # not docs/site: two suites at once must not share the folder
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(CONFIG), "-d", str(site)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # a banner about MkDocs 2.0, not this build
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (site / "index.html").is_file() and (site / "configuration" / "index.html").is_file()
    reference = (site / "reference" / "index.html").read_text(encoding="utf-8")
    missing = [key for _, key in schema_keys() if f"<code>{key}</code>" not in reference]
    assert not missing, f"the built configuration reference lacks {missing}"


# -- the configuration reference ------------------------------------------------------------------


def config_reference() -> ModuleType:
    """scripts/config_reference.py as a module (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location("config_reference", REFERENCE_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def documented() -> list[tuple[str, type]]:
    """(its section's name, schema) of every option composed from a schema ("optimizer=sgd")
    and of every command's own settings ("nntrain-eval")."""
    options = [(f"{group}={option}", schema) for group, option, schema in SCHEMA_OPTIONS]
    return options + [(command, schema) for _, command, schema in COMMAND_SETTINGS]


def schema_keys() -> list[tuple[str, str]]:
    """(section, key) of every setting of every option and command declared in a schema."""
    return [(name, key) for name, schema in documented() for key, *_ in reference_rows(schema)]


def option_sections(markdown: str) -> dict[str, list[str]]:
    """{"group=option" or "nntrain-eval": the lines of its section} (a section may list several
    options: those sharing a schema)."""
    sections: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in markdown.splitlines():
        if line.startswith("#"):
            lines = []  # what follows belongs to this heading alone
        if line.startswith("### "):
            for option in line.removeprefix("### ").split(", "):
                assert option not in sections, f"{option} has two sections"
                sections[option] = lines
        lines.append(line)
    return sections


def test_the_configuration_reference_has_every_setting_of_every_option() -> None:
    sections = option_sections(config_reference().reference_markdown())
    for name, schema in documented():
        lines = sections.get(name)
        assert lines is not None, f"the reference has no section for {name}"
        rows = [line for line in lines if line.startswith("| `")]
        keys = [key for key, *_ in reference_rows(schema)]
        shown = [row.split(" | ")[0].removeprefix("| ").strip("`") for row in rows]
        assert shown == keys, f"{name}: the reference's keys are not the schema's"
    assert any(key.startswith("+") for _, key in schema_keys())  # extras are marked


def test_python_scripts_config_reference_prints_the_page() -> None:
    done = subprocess.run(
        [sys.executable, str(REFERENCE_SCRIPT)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == config_reference().reference_markdown()


@dataclass
class Piped(Settings):
    """A demo | with * markup."""

    KEY: ClassVar[str] = "demo"

    mode: str = setting("a|b", "either a|b or c, as in `x|y`; _target_ **not bold**; <run dir>")


def test_a_pipe_or_markup_in_the_schema_keeps_the_table_whole() -> None:
    markdown = pytest.importorskip("markdown")
    page = "\n".join(config_reference().option_section("demo", Piped, ["one"]))
    html = markdown.markdown(page, extensions=["tables"])
    assert html.count("<td>") == 4, html
    assert "<code>a|b</code>" in html and "<code>x|y</code>" in html, html
    assert "either a|b or c" in html and "_target_ **not bold**; &lt;run dir&gt;" in html, html
    assert "A demo | with * markup." in html, html


def test_options_that_share_a_schema_appear_once_with_their_names() -> None:
    module = config_reference()  # a fresh copy: its option lists are this test's to change
    module.SCHEMA_OPTIONS = [("demo", "one", Piped), ("demo", "two", Piped)]
    module.COMMAND_SETTINGS = []
    page = module.reference_markdown()
    assert "## demo\n\n### demo=one, demo=two\n" in page, page
    assert page.count("| `demo.mode` |") == 1, page
