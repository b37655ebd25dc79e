"""From Hydra's override grammar to Optuna distributions.

The search space is written the way Hydra users already write sweeps, and the way
hydra-optuna-sweeper reads it, so a config written for that plugin works here:

    choice(a, b, c)                 CategoricalDistribution
    range(start, stop[, step])      IntDistribution (FloatDistribution with a float step);
                                    Python's range: stop itself is never drawn
    shuffle(range(...))             CategoricalDistribution of the range's values
    interval(low, high)             FloatDistribution
    int(interval(1, 5))             IntDistribution (whole-number bounds, as Hydra's int() casts)
    tag(log, interval(low, high))   FloatDistribution(log=True)
    tag(int, interval(low, high))   IntDistribution (tags combine: tag(log, int, interval(...)))

A plain value (`trainer.max_epochs=5`) is not searched: every trial gets it as it is.
Parsing is Hydra's own OverridesParser, so quoting, escapes, lists and dicts mean what they mean
on the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from hydra.errors import HydraException

if TYPE_CHECKING:
    from hydra.core.config_loader import ConfigLoader
    from optuna.distributions import BaseDistribution

KNOWN_TAGS = ("log", "int")


class SearchSpace:
    """What every trial gets: the searched keys (in the order given) and the fixed overrides.

    A plain class, not a dataclass: Hydra's plugin scan executes this module before it is in
    sys.modules, where a dataclass with postponed annotations cannot be built.
    """

    def __init__(self) -> None:
        self.distributions: dict[str, BaseDistribution] = {}
        self.fixed: list[str] = []
        self.fixed_keys: set[str] = set()

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """A trial's command line: the fixed overrides as typed, then key=value per search key,
        then any parameter that a custom search space added (in the order it suggested them)."""
        keys = [*self.distributions, *(key for key in params if key not in self.distributions)]
        return [*self.fixed, *(f"{key}={override_text(params[key])}" for key in keys)]


def params_to_overrides(params: Mapping[str, Any] | None) -> list[str]:
    """hydra.sweeper.params as override strings. A value that YAML already parsed (a number, a
    list, null) is written back the way the override grammar reads it."""
    return [f"{key}={value_text(value)}" for key, value in (params or {}).items()]


def value_text(value: Any) -> str:
    if isinstance(value, str):
        return value  # grammar text, e.g. choice(32, 64) or tag(log, interval(1e-4, 1e-1))
    if isinstance(value, Mapping | list | tuple):
        return Transformer.str(value if isinstance(value, Mapping) else list(value))
    return Transformer.str(value)  # None -> null, True -> True (the grammar's bool), numbers


def parse_search_space(
    overrides: list[str], config_loader: ConfigLoader | None = None
) -> SearchSpace:
    """Split overrides into searched keys and fixed ones; a later override of the same key
    replaces an earlier one (the command line comes after hydra.sweeper.params)."""
    parser = OverridesParser.create(config_loader=config_loader)  # the loader resolves glob()
    by_key: dict[str, Override] = {}
    for override in parser.parse_overrides(overrides):
        key = override.get_key_element()
        by_key.pop(key, None)
        by_key[key] = override
    space = SearchSpace()
    for key, override in by_key.items():
        if override.is_sweep_override():
            space.distributions[key] = distribution_from_override(override)
        else:
            assert override.input_line is not None
            space.fixed.append(override.input_line)
            space.fixed_keys.add(key)
    return space


def distribution_from_override(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override; a mistake in it is a HydraException that
    names the key, which nntrain prints as one line."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    key = override.get_key_element()
    where = f"{key}={override.get_value_string()}"
    sweep = override.value()
    tags = set(getattr(sweep, "tags", None) or ())
    unknown = sorted(tags.difference(KNOWN_TAGS))
    if unknown:
        raise HydraException(f"{where}: unknown tag {unknown[0]!r}; the tags are log and int.")
    log, integer = "log" in tags, "int" in tags
    shuffled = isinstance(sweep, ChoiceSweep | RangeSweep) and sweep.shuffle
    if shuffled:
        assert isinstance(sweep, ChoiceSweep | RangeSweep)
        # shuffle() asks for the values in any order: a choice, whose values keep the order
        # written (a stored study refuses a choice whose order changed).
        sweep.shuffle = False
    try:
        if override.is_choice_sweep():
            if tags:
                raise ValueError("tag() applies to range() and interval(), not to choices")
            return CategoricalDistribution([choice_value(x) for x in override.sweep_iterator()])
        if override.is_range_sweep():
            assert isinstance(sweep, RangeSweep)
            values = list(override.sweep_iterator())
            if not values:
                raise ValueError("the range is empty (its stop value is never drawn)")
            if shuffled:
                if tags:
                    raise ValueError("tag() does not apply to shuffle(range(...))")
                return CategoricalDistribution([choice_value(v) for v in values])
            step = abs(sweep.step)
            if all(isinstance(v, int) for v in values):
                if log and step != 1:
                    raise ValueError("a log-scaled range needs step 1")
                return IntDistribution(min(values), max(values), log=log, step=step)
            if log:
                raise ValueError("a float range is on a grid; use tag(log, interval(...))")
            return FloatDistribution(float(min(values)), float(max(values)), step=float(step))
        if override.is_interval_sweep():
            assert isinstance(sweep, IntervalSweep)
            assert sweep.start is not None and sweep.end is not None
            # int(interval(1, 5)): Hydra's int() cast leaves whole-number bounds as ints
            # (a plain interval's bounds are floats), so those ask for whole numbers.
            if isinstance(sweep.start, int) and isinstance(sweep.end, int):
                return IntDistribution(sweep.start, sweep.end, log=log)
            if integer:
                if not (float(sweep.start).is_integer() and float(sweep.end).is_integer()):
                    raise ValueError("tag(int, interval(...)) needs whole-number bounds")
                return IntDistribution(int(sweep.start), int(sweep.end), log=log)
            return FloatDistribution(sweep.start, sweep.end, log=log)
    except ValueError as error:  # optuna's own checks too: low > high, log with low <= 0
        raise HydraException(f"{where}: {error}.") from None
    raise HydraException(f"{where}: this kind of sweep cannot be searched.")


def choice_value(value: Any) -> Any:
    """A categorical choice as Optuna stores it: numbers and booleans as they are (TPE and the
    results keep them numeric), anything else as its override text (a string, a list, null)."""
    if isinstance(value, bool | int | float):
        return value
    return Transformer.str(value)


def override_text(value: Any) -> str:
    """A sampled value as override text; string choices are override text already."""
    return value if isinstance(value, str) else Transformer.str(value)


def composition_shape(overrides: list[str]) -> tuple[str, ...]:
    """What decides whether a trial's overrides compose: each key with its value, numbers
    replaced by their kind. Numbers drawn for a key compose alike (one of the wrong type fails
    for every draw), a new string or config group option may not, so the sweeper asks Hydra to
    compose a trial's config only for a shape it has not composed yet."""
    shape = []
    for override in overrides:
        key, equals, value = override.partition("=")
        shape.append(f"{key}{equals}{number_kind(value) or value}")
    return tuple(shape)


def number_kind(value: str) -> str | None:
    """<int> or <float> for a number as an override writes it, else None."""
    for kind, parse in (("<int>", int), ("<float>", float)):
        try:
            parse(value)
        except ValueError:
            continue
        return None if value.strip().lower() in ("nan", "inf", "-inf", "+inf") else kind
    return None
