"""The configuration reference, in Markdown, generated from the settings schema (nntrain.schema):
every option of nntrain.configs.SCHEMA_OPTIONS, and every command's own settings
(COMMAND_SETTINGS), with its docs and a table of its settings (key, what it takes, default, what
it does), so the reference cannot drift from the code.

The manual's page "Configuration reference" is this text: docs/hooks.py calls `reference_markdown`
while MkDocs builds. Printed here for a terminal or a diff:

    python scripts/config_reference.py                # the page, to stdout
    python scripts/config_reference.py > reference.md
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Iterable, Iterator

from nntrain.configs import COMMAND_SETTINGS, SCHEMA_OPTIONS

from nntrain.schema import MISSING, reference_rows

# Groups in the order a reader meets them; any other group follows, in SCHEMA_OPTIONS' order.
GROUP_ORDER = ("trainer", "optimizer", "scheduler", "data", "lr_find")

INTRODUCTION = """\
# Configuration reference

Every setting of the options whose settings nntrain declares in its schema (`nntrain/schema.py`),
generated from that schema each time the manual is built, so it says what the code does;
`python scripts/config_reference.py` prints this page. What each group is for, with examples, is
in [Configuration](configuration.md).

- **key**: set it on the command line as `key=value` (`nntrain optimizer.lr=3e-4`). A key marked
  `+` is not in the composed config: add it with `+key=value` (`nntrain +optimizer.eps=1e-6`).
- **takes**: the values the key accepts. Any other value stops the run before anything is built,
  with one sentence naming the key (see [Mistakes](mistakes.md)).
- **default**: the option's value, as written on the command line (`null`, `true`, `[0.9,0.999]`);
  *required* when there is none and the key must be given.
"""

COMMANDS = """\
## commands

The settings of the commands that work from a trained run are top-level keys:
`nntrain-eval ckpt=outputs/2026-11-25/10-00-00-mlp-digits split=val`. nntrain-lr-find takes
nntrain's config and [lr_find](#lr_find).
"""

# What Markdown would read as markup in a table cell's text: the cell separator |, a backslash,
# * (decay**N is bold otherwise), and _ at a word's edge (_target_); _ inside a word
# (early_stopping) and brackets not followed by a link's (...) are plain text already. A docstring's
# `code` stays code: MkDocs' Markdown does not split a cell inside a code span.
MARKUP = re.compile(r"[\\*|]|(?<!\w)_|_(?!\w)")
# A < that could open an HTML tag (<run dir> would vanish as one); a < before a space stays.
TAG = re.compile(r"<(?=[A-Za-z/!?])")
CODE_SPAN = re.compile(r"(`[^`]+`)")


def escaped(text: str) -> str:
    """Text for a table cell: Markdown's markup characters (the cell separator | too) escaped
    outside its code spans."""
    parts = CODE_SPAN.split(text)  # odd parts are code spans
    return "".join(
        part if index % 2 else TAG.sub("&lt;", MARKUP.sub(lambda m: "\\" + m.group(0), part))
        for index, part in enumerate(parts)
    )


def code(text: str) -> str:
    """Text as inline code in a table cell. A | inside stays as it is: MkDocs' Markdown does not
    split a cell inside a code span (and would show a backslash there); a text holding a
    backtick is fenced with two."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def summary(schema: type) -> str:
    """The first paragraph of the schema's docstring, on one line ("" when it has none: a
    dataclass without a docstring gets its signature as one)."""
    doc = inspect.cleandoc(schema.__doc__ or "")
    if doc.startswith(f"{schema.__name__}("):
        return ""
    return " ".join(doc.split("\n\n")[0].split())


def grouped_options() -> dict[str, dict[type, list[str]]]:
    """{group: {schema: [its options]}}: the groups in reading order, each schema once."""
    groups: dict[str, dict[type, list[str]]] = {}
    for group, option, schema in SCHEMA_OPTIONS:
        groups.setdefault(group, {}).setdefault(schema, []).append(option)
    known = [group for group in GROUP_ORDER if group in groups]
    others = [group for group in groups if group not in GROUP_ORDER]
    return {group: groups[group] for group in [*known, *others]}


def default_cell(default: str) -> str:
    if default == MISSING:
        return "*required*"
    return code(default) if default else '`""`'


def table(schema: type) -> Iterator[str]:
    yield "| key | takes | default | what it does |"
    yield "|---|---|---|---|"
    for key, takes, default, doc in reference_rows(schema):
        yield f"| {code(key)} | {escaped(takes)} | {default_cell(default)} | {escaped(doc)} |"


def option_section(group: str, schema: type, options: Iterable[str]) -> Iterator[str]:
    """One schema: its options as a heading, its docs, its table."""
    yield from section(", ".join(f"{group}={option}" for option in options), schema)


def command_section(command: str, schema: type) -> Iterator[str]:
    """A command's own settings: its name as the heading, its docs, its table."""
    yield from section(command, schema)


def section(heading: str, schema: type) -> Iterator[str]:
    yield f"### {heading}"
    yield ""
    doc = summary(schema)
    if doc:
        yield escaped(doc)
        yield ""
    yield from table(schema)
    yield ""


def reference_markdown() -> str:
    """The whole page: the introduction, per group its options' sections, then the commands'."""
    lines = [INTRODUCTION]
    for group, schemas in grouped_options().items():
        lines += [f"## {group}", ""]
        for schema, options in schemas.items():
            lines += option_section(group, schema, options)
    if COMMAND_SETTINGS:
        lines.append(COMMANDS)
        for _, command, schema in COMMAND_SETTINGS:
            lines += command_section(command, schema)
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    sys.stdout.write(reference_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
