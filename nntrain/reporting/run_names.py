"""What a run is called wherever runs are compared, and where its TensorBoard events go.

TensorBoard names a run by the folder of its event files, relative to --logdir. So:

- a single run writes its events in its run directory: `tensorboard --logdir outputs` lists it
  as `2026-11-25/10-00-00-cnn-digits`, `tensorboard --logdir <run dir>` as `.`;
- a sweep job writes them in a folder of the sweep directory named by its label, the run's
  `name` and the overrides that differ between the sweep's jobs, shortened and rounded
  (`mlp-digits lr=0.003`): `tensorboard --logdir <sweep dir>` lists the jobs by label, and
  `--logdir outputs` as `multirun/<day>/<time>-<name>/<label>`. The folder holds a `.job` file
  naming its job (a resumed job finds its folder again by it).

The same label is the HParams tab's Trial ID and a sweep table's row (nntrain.reporting).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from nntrain import files

JOB_MARKER = ".job"  # in a sweep job's events folder: the job directory's name
MAX_FOLDER = 120  # characters of a label kept in a folder name (file systems allow 255 bytes)

# Well-known short names of keys (the last part of a dotted key otherwise).
SHORT_NAMES = {
    "weight_decay": "wd",
    "batch_size": "bs",
    "max_epochs": "epochs",
    "learning_rate": "lr",
    "label_smoothing": "smoothing",
    "warmup_epochs": "warmup",
    "mixup_alpha": "mixup",
    "cutmix_alpha": "cutmix",
}


def compact_value(value: object, digits: int = 3) -> str:
    """A value as a label shows it: a float with `digits` significant digits, with an exponent
    below 0.001 or where it is shorter (0.0013292918943 -> 0.00133, 0.001, 0.000149 ->
    1.49e-4, 1e-05 -> 1e-5, 1000000000000.0 -> 1e+12); whole numbers, words and lists as they
    are."""
    text = str(value)
    if isinstance(value, bool) or re.fullmatch(r"[+-]?\d+", text):
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    if number != number or number in (float("inf"), float("-inf")):
        return text
    fixed = re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{number:.{digits}g}")
    exponent = re.sub(r"\.?0*e([+-])0*(\d)", r"e\1\2", f"{number:.{digits - 1}e}")
    small = abs(number) < 1e-3 and number != 0  # 0.000149 -> 1.49e-4, 0.001 stays
    return exponent if small or len(exponent) < len(fixed) - 1 else fixed


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key by its last part (a well-known name shortened further: weight_decay ->
    wd), or by as many last parts as tell it apart from the others."""
    keys = list(dict.fromkeys(keys))
    shown: dict[str, str] = {}
    for key in keys:
        parts = key.split(".")
        for count in range(1, len(parts) + 1):
            tail = ".".join(parts[-count:])
            candidate = SHORT_NAMES.get(tail, tail) if count == 1 else tail
            others = [k for k in keys if k != key and k.split(".")[-count:] == parts[-count:]]
            if not others:
                shown[key] = candidate
                break
        else:
            shown[key] = key
    return shown


def override_parts(override: str) -> tuple[str, str]:
    """(key, value) of a command-line override (`+model.x=1` -> model.x, 1)."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def is_own_key(key: str) -> bool:
    """Whether a key is the run's setting (not Hydra's own, not how it was started)."""
    return not key.startswith("hydra") and key != "resume"


def label(name: str, overrides: Sequence[str], keys: Sequence[str] | None = None) -> str:
    """`name` and the overrides of `keys` (all of the run's own when None), keys shortened and
    values rounded; a group choice already in the name (model=cnn in cnn-digits) said once."""
    chosen = [override_parts(o) for o in overrides if "=" in o]
    chosen = [(k, v) for k, v in chosen if is_own_key(k) and (keys is None or k in keys)]
    short = short_keys([k for k, _ in chosen])
    parts = [name]
    for key, value in chosen:
        if "." not in key and value and value in name:
            continue
        parts.append(f"{short[key]}={compact_value(value)}")
    return " ".join(parts)


def compact_overrides(overrides: Sequence[str], keys: Sequence[str] | None = None) -> str:
    """The overrides as a label shows them, without the name: `lr=0.00133 wd=1.2e-5`."""
    return label("", overrides, keys).strip()


# --- sweeps -------------------------------------------------------------------------------------


def sweep_of(run_dir: Path) -> Path | None:
    """The sweep directory a job directory belongs to (its parent holds Hydra's multirun.yaml);
    None for a single run, or a job copied out of its sweep."""
    parent = run_dir.parent
    if (parent / "multirun.yaml").is_file() and (run_dir / ".hydra").is_dir():
        return parent
    return None


def read_yaml(path: Path) -> Any:
    try:
        return files.load_yaml(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None


def swept_keys(sweep_dir: Path) -> list[str]:
    """The keys a sweep varies: those given several values on its command line
    (optimizer.lr=1e-3,3e-3, model=mlp,cnn, range(...), glob(...)) and those its sweeper
    searches (hydra.sweeper.params: an Optuna search's space), from its multirun.yaml."""
    path = sweep_dir / "multirun.yaml"
    try:
        stamp: int | None = path.stat().st_mtime_ns
    except OSError:
        stamp = None
    return list(_swept_keys(path, stamp))


@functools.lru_cache(maxsize=8)
def _swept_keys(path: Path, stamp: int | None) -> tuple[str, ...]:
    """swept_keys, read once per version of multirun.yaml (stamp: its mtime): a job names
    itself more than once, and Hydra's override parser takes ~10 ms an override."""
    config = read_yaml(path) or {}
    hydra = config.get("hydra") or {}
    given = list((hydra.get("overrides") or {}).get("task") or [])
    params = (hydra.get("sweeper") or {}).get("params") or {}
    given += [f"{key}={value}" for key, value in params.items()]
    return tuple(key for key, sweep in map(parsed_sweep, given) if sweep and is_own_key(key))


def parsed_sweep(override: str) -> tuple[str, bool]:
    """(key, whether the override gives several values), by Hydra's own override parser."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        (parsed,) = OverridesParser.create().parse_overrides([override])
    except Exception:  # a value Hydra itself would refuse: not a sweep nntrain can name
        return override_parts(override)[0], False
    return parsed.key_or_group.lstrip("+~"), parsed.is_sweep_override()


def job_label(job_dir: Path, sweep_dir: Path | None = None) -> str:
    """A sweep job's label: its name and its values of the sweep's swept keys (all its own
    overrides when the sweep varies none, e.g. `nntrain -m seed=1`)."""
    sweep_dir = sweep_dir or job_dir.parent
    overrides = read_yaml(job_dir / ".hydra" / "overrides.yaml") or []
    swept = swept_keys(sweep_dir)
    return label(job_name(job_dir), overrides, swept or None)


def job_name(job_dir: Path) -> str:
    """A job's `name` as its run resolves it (.hydra/config.yaml keeps the default's
    ${hydra:runtime.choices.model}-${hydra:runtime.choices.data}: the choices are in
    .hydra/hydra.yaml)."""
    config = read_yaml(job_dir / ".hydra" / "config.yaml") or {}
    name = str(config.get("name") or "run")
    if "${" not in name:
        return name
    hydra = (read_yaml(job_dir / ".hydra" / "hydra.yaml") or {}).get("hydra") or {}
    choices = (hydra.get("runtime") or {}).get("choices") or {}

    def chosen(match: re.Match[str]) -> str:
        value = choices.get(match.group(1))
        return match.group(0) if value is None else str(value)

    name = re.sub(r"\$\{hydra:runtime\.choices\.([\w/]+)\}", chosen, name)
    name = re.sub(r"\$\{(\w+)\}", lambda m: str(config.get(m.group(1), m.group(0))), name)
    return name


def folder_name(text: str) -> str:
    """A label as one folder name: no '/', no control characters, at most MAX_FOLDER long."""
    cleaned = re.sub(r"[/\\\x00-\x1f]", "_", text).strip() or "run"
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    return cleaned if len(cleaned) <= MAX_FOLDER else cleaned[: MAX_FOLDER - 1] + "…"


def events_dir(run_dir: str | Path) -> Path:
    """Where a run's TensorBoard events go: its run directory; a sweep job's, the sweep
    directory's folder named by its label (created, and claimed with a `.job` file)."""
    run_dir = Path(run_dir)
    sweep = sweep_of(run_dir)
    if sweep is None:
        return run_dir
    found = claimed_folder(sweep, run_dir.name)
    if found is not None:
        return found
    base = folder_name(job_label(run_dir, sweep))
    for candidate in (base, f"{base} (job {run_dir.name})"):
        folder = sweep / candidate
        if candidate.isdigit() or (folder / ".hydra").exists() or folder.is_file():
            continue  # a job's own directory, or a file of the sweep
        try:
            folder.mkdir(exist_ok=True)
            descriptor = os.open(folder / JOB_MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:  # another job has that label (a value rounded alike)
            continue
        except OSError:
            break
        with os.fdopen(descriptor, "w") as marker:
            marker.write(run_dir.name + "\n")
        return folder
    return run_dir


def claimed_folder(sweep_dir: Path, job: str) -> Path | None:
    """The events folder a job claimed earlier (a resumed job writes on in it)."""
    for marker in sorted(sweep_dir.glob(f"*/{JOB_MARKER}")):
        try:
            if marker.read_text().strip() == job:
                return marker.parent
        except OSError:
            continue
    return None


def sweep_events_dirs(sweep_dir: Path) -> dict[str, Path]:
    """Each job's events folder in a sweep directory, by job directory name."""
    found: dict[str, Path] = {}
    for marker in sorted(sweep_dir.glob(f"*/{JOB_MARKER}")):
        try:
            found.setdefault(marker.read_text().strip(), marker.parent)
        except OSError:
            continue
    return found


def tensorboard_dir(run_dir: str | Path) -> Path:
    """The folder to give `tensorboard --logdir` for a run: its run directory; for a sweep job,
    its events folder (where it exists)."""
    run_dir = Path(run_dir)
    sweep = sweep_of(run_dir)
    if sweep is None:
        return run_dir
    return claimed_folder(sweep, run_dir.name) or run_dir


def differing_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The keys whose values differ between rows' overrides (a sweep table's columns)."""
    values: dict[str, set[str]] = {}
    order: list[str] = []
    for row in rows:
        for override in str(row.get("overrides") or "").split():
            key, value = override_parts(override)
            if is_own_key(key):
                values.setdefault(key, set()).add(value)
                if key not in order:
                    order.append(key)
    counts = {key: sum(1 for row in rows if key_in(row, key)) for key in order}
    return [k for k in order if len(values[k]) > 1 or counts[k] != len(rows)]


def key_in(row: Mapping[str, Any], key: str) -> bool:
    return any(override_parts(o)[0] == key for o in str(row.get("overrides") or "").split())


def trial_id(run_dir: Path) -> str:
    """The HParams tab's Trial ID of a run: short enough for the tab's column (about 17
    characters show) and unique in a logdir (runs of one ID would be averaged into one row): a
    sweep job's number and its sweep's start time (`job 3 · 13:29:03`), a single run's directory
    name (`13-22-28-mlp-digits`)."""
    sweep = sweep_of(run_dir)
    if sweep is None:
        return run_dir.name
    started = re.match(r"(\d\d)-(\d\d)-(\d\d)", sweep.name)
    when = ":".join(started.groups()) if started else sweep.name
    return f"job {run_dir.name} · {when}"
