"""The composed config checked against the schema (nntrain.schema), before anything is built:
each group whose option is one of nntrain's own (its _target_ is the schema's) must hold only
the schema's keys, of its types and in its ranges. A group that names a class of the user's
(data._target_=mydata.Rings) is that class's to check."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig

from nntrain.configs import COMMAND_SETTINGS, SCHEMA_OPTIONS
from nntrain.errors import UserError
from nntrain.schema import Settings, checked, defaults_of, fields_of, is_extra, unknown_message


def schemas_of(group: str) -> list[type[Settings]]:
    """The schemas of a config group's options (several data options share one schema)."""
    found = [schema for g, _, schema in SCHEMA_OPTIONS if g == group]
    return list(dict.fromkeys(found))


def schema_for(group: str, node: object) -> type[Settings] | None:
    """The schema of the option a node was composed from, known by its _target_."""
    if not isinstance(node, DictConfig):
        return None
    target = node.get("_target_")
    for schema in schemas_of(group):
        declared = fields_of(schema).get("_target_")
        if declared is None or declared.default == target:  # a command's own settings
            return schema
    return None


def check_settings(cfg: DictConfig) -> dict[str, Settings]:
    """Every group of cfg that has a schema, checked; returns the checked settings by group."""
    result = {}
    for group in dict.fromkeys(g for g, _, _ in SCHEMA_OPTIONS):
        settings = check_group(group, cfg.get(group))
        if settings is not None:
            result[group] = settings
    return result


def check_group(group: str, node: object) -> Settings | None:
    """One group's node checked against its option's schema (None: a class of the user's)."""
    schema = schema_for(group, node)
    if schema is None:
        return None
    removed = next(missing_keys(defaults_of(schema), node, group), None)
    if removed is not None:
        raise UserError(removed_sentence(removed))
    return checked(schema, node)


def missing_keys(declared: dict[str, Any], node: object, prefix: str) -> Iterator[str]:
    """Keys the option declares that the node lacks (removed with ~key), nested ones too."""
    if not isinstance(node, DictConfig):
        return
    for name, default in declared.items():
        if name not in node:
            yield f"{prefix}.{name}"
        elif isinstance(default, dict):
            yield from missing_keys(default, node[name], f"{prefix}.{name}")


def removed_sentence(key: str) -> str:
    parent = key.rpartition(".")[0]
    return (
        f"{key} cannot be removed: every setting of {parent} has a value; set it instead "
        f"(`nntrain --cfg job` shows its default)."
    )


def nested_schemas(schema: type[Settings]) -> Iterator[type[Settings]]:
    yield schema
    for field in fields_of(schema).values():
        value = field.default_factory() if callable(field.default_factory) else None
        if isinstance(value, Settings):
            yield from nested_schemas(type(value))


def unknown_key_sentence(key: str, command: str = "nntrain", append: str = "") -> str | None:
    """For Hydra's 'Could not override <key>': the schema's sentence with a did-you-mean,
    when the key's parent is a group of settings the schema declares (or, for a top-level
    key, the command's own settings)."""
    parent, _, name = key.rpartition(".")
    if not parent:
        own = [schema for _, name_, schema in COMMAND_SETTINGS if name_ == command]
        return unknown_message(own[0], name) if own else None
    group = parent.split(".")[0]
    candidates: list[Any] = [
        nested
        for schema in schemas_of(group)
        for nested in nested_schemas(schema)
        if parent == nested.KEY
    ]
    if not candidates:
        return None
    # Of several (the data options), the one whose keys come nearest.
    best = max(candidates, key=lambda schema: closeness(name, list(fields_of(schema))))
    if name in fields_of(best) and not is_extra(best, name):  # removed with ~, then set
        return removed_sentence(key)
    if is_extra(best, name):  # declared, but not in the composed config: added with +
        return f"{key} is added, not overridden (it is not in the config until given): write {append or '+' + key + '=...'}."
    return unknown_message(best, name)


def closeness(name: str, known: list[str]) -> float:
    return max((difflib.SequenceMatcher(None, name, k).ratio() for k in known), default=0.0)
