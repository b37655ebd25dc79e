"""The settings schema: each config group's settings declared once, as a dataclass whose fields
carry the default, the type and one line of docs (`setting`).

The same dataclass is the option Hydra composes (`defaults_of` stores its defaults in Hydra's
ConfigStore: configs/__init__.py), the check a composed node passes before anything is built
(`checked`: unknown keys with a did-you-mean, missing values, types, then the dataclass's own
range and cross-field checks in __post_init__), and the configuration reference of the docs
(`reference_rows`).

Why our own check rather than OmegaConf's typed nodes: OmegaConf converts what it can (a bool
setting takes 2 as true, a text setting takes 3 as "3") and reports in several lines of its own;
here a value is of the declared type or refused, in one sentence that says what the setting
takes. The nodes Hydra composes stay plain (untyped) for the same reason.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Literal, TypeVar, Union

from nntrain.errors import UserError

MISSING = "???"  # OmegaConf's mark of a value the user must give (data.target=???)

SettingsT = TypeVar("SettingsT", bound="Settings")


def setting(
    default: Any,
    doc: str,
    *,
    expects: str | None = None,
    example: Any = None,
    extra: bool = False,
    fallback: Any = None,
) -> Any:
    """A field of a settings dataclass: its default, one line of docs, and optionally what its
    values are in words (`expects`, e.g. "a positive integer") and an example value for error
    messages (else the default). An `extra` setting is not in the composed config; a user adds
    it (+optimizer.eps=1e-6) and it is checked as any other (torch's rarer optimizer keys).
    A default that refers to another key (${seed}) needs a `fallback`: the value it takes when
    the settings are built in Python, outside a config (Digits(batch_size=32))."""
    metadata = {
        "doc": doc,
        "expects": expects,
        "example": example,
        "extra": extra,
        "fallback": fallback,
    }
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class Settings:
    """The base of every settings dataclass. KEY is where its settings live in the config
    (trainer, trainer.early_stopping, data; "" for a command's own top-level keys)."""

    KEY: ClassVar[str] = ""
    COMMAND: ClassVar[str] = ""  # for a command's own top-level settings: its name

    def must(
        self, name: str, condition: bool, expects: str | None = None, example: Any = None
    ) -> None:
        """Refuse this setting's value unless condition holds, saying what it takes."""
        if not condition:
            field = fields_of(type(self))[name]
            value = getattr(self, name)
            raise UserError(value_message(type(self), field, value, expects, example))


def key_of(schema: type, name: str) -> str:
    prefix: str = getattr(schema, "KEY", "")
    return f"{prefix}.{name}" if prefix else name


def fields_of(schema: type) -> dict[str, dataclasses.Field[Any]]:
    return {field.name: field for field in dataclasses.fields(schema)}


def type_hints(schema: type) -> dict[str, Any]:
    """The fields' types (resolved: the settings modules use `from __future__ import annotations`)."""
    return typing.get_type_hints(schema)


# -- checking a composed node -------------------------------------------------------------------


def checked(schema: type[SettingsT], values: object) -> SettingsT:
    """A config node (a DictConfig or a mapping) as the schema's dataclass: every key one of its
    settings, every value of its type, then its own __post_init__ checks. Raises a UserError
    naming the first setting that is wrong."""
    values = plain(values)
    prefix = schema.KEY or "the command"
    # A group set to null (trainer.early_stopping=null) is refused, not read as its defaults:
    # "no early stopping" is what it seems to say, and other code reads the group's keys.
    if not isinstance(values, Mapping):
        names = [name for name in fields_of(schema) if not name.startswith("_")]
        raise UserError(
            f"{prefix} must be a group of settings ({', '.join(names)}), e.g. "
            f"{key_of(schema, names[0])}=..., got {values!r}."
        )
    known = fields_of(schema)
    for name in values:
        if name not in known:
            raise UserError(unknown_message(schema, str(name)))
    hints = type_hints(schema)
    given = {
        name: checked_value(schema, known[name], hints[name], plain(value))
        for name, value in values.items()
    }
    for name, field in known.items():  # ${...} defaults have no config to refer to here
        if name not in given and is_interpolation(default_of(field)):
            given[name] = field.metadata.get("fallback")
    return schema(**given)


def is_interpolation(value: object) -> bool:
    return isinstance(value, str) and value.startswith("${")


def checked_value(schema: type, field: dataclasses.Field[Any], kind: Any, value: Any) -> Any:
    """One setting's value, checked against its declared type (nested groups recursively)."""
    key = key_of(schema, field.name)
    if value == MISSING:
        example = override_text(field.metadata.get("example") or "VALUE")
        raise UserError(f"{key} has no value; set it on the command line, e.g. {key}={example}.")
    nested = nested_schema(kind)
    if nested is not None:
        return None if value is None and allows_none(kind) else checked(nested, value)
    if not fits(value, kind):
        raise UserError(value_message(schema, field, value))
    return converted(value, kind)


def plain(values: object) -> object:
    """A DictConfig as plain Python, its ${...} resolved (against the whole config)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(values, DictConfig | ListConfig):
        return OmegaConf.to_container(values, resolve=True)
    return values


def nested_schema(kind: Any) -> type | None:
    """The dataclass of a nested group (or Optional group), if kind is one."""
    options = union_args(kind) or (kind,)
    found = [k for k in options if isinstance(k, type) and dataclasses.is_dataclass(k)]
    return found[0] if found else None


def allows_none(kind: Any) -> bool:
    return type(None) in union_args(kind)


def union_args(kind: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(kind)
    return typing.get_args(kind) if origin in (Union, types.UnionType) else ()


def fits(value: Any, kind: Any) -> bool:
    """Whether value is of the declared type, strictly: a bool is no number, a number no text,
    nan and inf no setting's value."""
    if kind is Any:
        return True
    if union_args(kind):
        return any(fits(value, option) for option in union_args(kind))
    origin = typing.get_origin(kind)
    if origin is Literal:
        return any(value == allowed and type(value) is type(allowed) for allowed in kind.__args__)
    if origin is list:
        (item,) = typing.get_args(kind) or (Any,)
        return isinstance(value, list | tuple) and all(fits(v, item) for v in value)
    if origin is dict or kind is dict:
        return isinstance(value, Mapping)
    return fits_plain(value, kind)


def is_extra(schema: type, name: str) -> bool:
    """Whether name is one of the schema's extras (added with +, not in the composed config)."""
    field = fields_of(schema).get(name)
    return field is not None and bool(field.metadata.get("extra"))


def fits_plain(value: Any, kind: Any) -> bool:
    if kind is type(None) or kind is None:
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        is_real = isinstance(value, int | float) and not isinstance(value, bool)
        return is_real and math.isfinite(value)
    if kind is str:
        return isinstance(value, str)
    return isinstance(value, kind)


def converted(value: Any, kind: Any) -> Any:
    """Lists stay lists (a tuple from Python becomes one). A number keeps its type (an int for
    a float setting compares and computes the same, and messages show it as it was given)."""
    return list(value) if isinstance(value, tuple) else value


# -- messages -----------------------------------------------------------------------------------


def value_message(
    schema: type,
    field: dataclasses.Field[Any],
    value: Any,
    expects: str | None = None,
    example: Any = None,
) -> str:
    """`<key> must be <what it takes>, got <value>; for example <key>=<example>.`"""
    key = key_of(schema, field.name)
    wanted = expects or field.metadata.get("expects") or describe(type_hints(schema)[field.name])
    if example is None:
        example = field.metadata.get("example")
    if example is None:
        example = default_of(field)
    shown = override_text(example)
    hint = f"; for example {key}={shown}" if example is not None and shown != MISSING else ""
    return f"{key} must be {wanted}, got {value!r}{hint}."


def unknown_message(schema: type, name: str) -> str:
    """A key the schema does not declare, with the nearest ones it does."""
    known = list(fields_of(schema))
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    where = getattr(schema, "KEY", "") or getattr(schema, "COMMAND", "the command")
    if close:
        return f"{key_of(schema, name)} is not a setting of {where}; did you mean {key_of(schema, close[0])}?"
    shown = [name for name in known if not name.startswith("_")]
    return (
        f"{key_of(schema, name)} is not a setting of {where}; its settings are {', '.join(shown)}."
    )


def describe(kind: Any) -> str:
    """A type in words: `a number or null`, `one of norm, value`."""
    if kind is Any:
        return "any value"
    if union_args(kind):
        return " or ".join(describe(option) for option in union_args(kind))
    origin = typing.get_origin(kind)
    if origin is Literal:
        return "one of " + ", ".join(override_text(v) for v in kind.__args__)
    if origin is list:
        (item,) = typing.get_args(kind) or (Any,)
        return f"a list of {PLURALS.get(item, 'values')}"
    if origin is dict:
        return WORDS[dict]
    return WORDS.get(kind, getattr(kind, "__name__", str(kind)))


WORDS: dict[Any, str] = {
    bool: "true or false", int: "an integer", float: "a number", str: "a text",
    type(None): "null", dict: "a group of keys",
}  # fmt: skip
PLURALS: dict[Any, str] = {int: "integers", float: "numbers", str: "texts"}


def override_text(value: Any) -> str:
    """A value as it is written on the command line: true, null, [0.9,0.999]."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(override_text(v) for v in value) + "]"
    return str(value)


def default_of(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


# -- what Hydra composes, and what the docs show ---------------------------------------------------


def in_display_order(schema: type) -> list[dataclasses.Field[Any]]:
    """_target_ and _partial_ first, then the option's own settings (data.dataset, data.root),
    then those it shares with other options (classes marked SHARED: batch size, splits), the
    run's seed last: the order of --cfg job and of the config tree a run prints."""
    fields = fields_of(schema)
    owner: dict[str, type] = {}  # the class that declared a setting first
    for cls in reversed(schema.__mro__):
        for name in vars(cls).get("__annotations__", {}):
            owner.setdefault(name, cls)
    first = [name for name in ("_target_", "_partial_") if name in fields]
    rest = [name for name in fields if name not in first]
    shared = [name for name in rest if vars(owner[name]).get("SHARED")]
    own = [name for name in rest if name not in shared]
    last = [name for name in shared if name == "seed"]
    names = first + own + [name for name in shared if name not in last] + last
    return [fields[name] for name in names]


def defaults_of(schema: type) -> dict[str, Any]:
    """The schema's defaults as the plain node Hydra composes (nested groups as nested dicts)."""
    result: dict[str, Any] = {}
    for field in in_display_order(schema):
        name = field.name
        if field.metadata.get("extra"):
            continue
        value = default_of(field)
        result[name] = defaults_of(type(value)) if isinstance(value, Settings) else value
    return result


def reference_rows(schema: type) -> Iterator[tuple[str, str, str, str]]:
    """(key, what it takes, default, docs) for every setting, nested groups expanded."""
    hints = type_hints(schema)
    for field in in_display_order(schema):
        name = field.name
        if name.startswith("_"):
            continue
        value = default_of(field)
        if isinstance(value, Settings):
            yield from reference_rows(type(value))
            continue
        wanted = field.metadata.get("expects") or describe(hints[name])
        key = key_of(schema, name)
        shown = f"+{key}" if field.metadata.get("extra") else key  # added, not overridden
        yield shown, wanted, override_text(value), field.metadata.get("doc", "")
