"""`nntrain resume=<run dir | checkpoint | latest>`, before Hydra composes: the command line
is rewritten. The run's own overrides (from its .hydra/overrides.yaml) come first, then the
user's new ones, and Hydra's run dir becomes the run's directory, so TensorBoard, train.log and
metrics.json continue where they were. After composition nntrain.launch.resume compares the
configs and continues the run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from nntrain import files
from nntrain.errors import require
from nntrain.launch.resume import DATA_FILE_KEYS, MOVED_KEYS, override_key
from nntrain.runs import (
    CHECKPOINTS,
    check_not_empty,
    hold,
    holds_a_run,
    resolve_checkpoint,
    run_dir_of,
)


def find_checkpoint(target: str, outputs: Path = Path("outputs")) -> Path:
    """The checkpoint a resume= value names: a .pt file, a run dir (its checkpoints/last.pt), or
    `latest` (the newest last.pt under ./outputs). Relative paths are relative to the working
    directory the user typed them in."""
    if target == "latest":
        candidates = sorted(outputs.glob("**/checkpoints/last.pt"), key=lambda p: p.stat().st_mtime)
        require(
            bool(candidates),
            f"resume=latest found no run with checkpoints/last.pt under {outputs.absolute()}; "
            "pass the run directory instead, e.g. resume=outputs/2026-11-25/10-00-00-mlp-digits.",
        )
        return candidates[-1].absolute()
    path = Path(os.path.expanduser(target)).absolute()
    require(
        path.exists(),
        f"resume={target}: {path} does not exist; pass a run directory or a checkpoint file.",
    )
    checkpoint = resolve_checkpoint(path, "last")
    require(
        checkpoint.is_file(),
        f"resume={target}: {path} has no checkpoints/last.pt; pass a run directory that "
        "trained at least one checkpoint, or a .pt file.",
    )
    check_not_empty(checkpoint)  # before Hydra writes anything into the run
    return checkpoint


def resume_values(argv: list[str]) -> list[str]:
    """The values of resume= on the command line, as typed: without the quotes nntrain adds
    to a value Hydra cannot read as it is (a path with spaces or non-ASCII letters)."""
    return [unquoted(a.split("=", 1)[1]) for a in argv if override_key(a) == "resume" and "=" in a]


def unquoted(value: str) -> str:
    """A value without the quotes of nntrain.commands.common.quote_plain_values ('...', its
    backslashes and quotes escaped); any other value as it is."""
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def saved_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides the run was started with (none if .hydra/ is gone)."""
    file = run_dir / ".hydra" / "overrides.yaml"
    if not file.is_file():
        return []
    overrides = files.load_yaml(file.read_text()) or []
    return [
        with_moved_key(o)
        for o in overrides
        if override_key(o) != "resume"
        # A user's config folder given as hydra.searchpath stays: the run's model=... needs it.
        and (not o.startswith("hydra.") or override_key(o) == "hydra.searchpath")
    ]


def own_overrides(run_dir: Path, checkpoint: Path) -> list[str]:
    """The overrides a run resumed in its own directory replays: its .hydra/overrides.yaml, or,
    when the directory was copied without its hidden .hydra/ (`cp -r run/* elsewhere/`), those
    its checkpoint keeps (without them the run's config was compared with the defaults)."""
    if (run_dir / ".hydra" / "overrides.yaml").is_file():
        return saved_overrides(run_dir)
    from nntrain.checkpoint import load_resumable

    return [with_moved_key(str(o)) for o in load_resumable(checkpoint).get("overrides") or []]


# Hydra's command-line options that take a value as the next argument.
VALUED_OPTIONS = {"--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn"}


def split_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra's options with their values, the overrides), each in the order typed."""
    options: list[str] = []
    overrides: list[str] = []
    arguments = iter(argv)
    for argument in arguments:
        if argument in VALUED_OPTIONS:
            options += [argument, next(arguments, "")]
        elif argument.startswith("-"):
            options.append(argument)
        else:
            overrides.append(argument)
    return options, overrides


def run_config_dir(run_dir: Path) -> list[str]:
    """--config-dir DIR when the run was started with one (its .hydra/hydra.yaml records the
    config sources): resuming a run of a user's own model=... needs that folder again."""
    file = run_dir / ".hydra" / "hydra.yaml"
    if not file.is_file():
        return []
    hydra_config = (files.load_yaml(file.read_text()) or {}).get("hydra", {})
    sources = (hydra_config.get("runtime") or {}).get("config_sources") or []
    given = [s["path"] for s in sources if s.get("provider") == "command-line" and s.get("path")]
    return ["--config-dir", given[0]] if given else []


def with_moved_key(override: str) -> str:
    """A replayed override of a key that has moved since the run started, under its new key
    (optimizer.fused=false -> trainer.fused_optimizer=false): the run resumes as it was."""
    prefix = override[: len(override) - len(override.lstrip("+~"))]
    key, sep, value = override[len(prefix) :].partition("=")
    return f"{prefix}{MOVED_KEYS[key][0]}{sep}{value}" if key in MOVED_KEYS else override


def rewrite_argv(argv: list[str]) -> list[str]:
    """The command line with resume=... expanded (see the module docstring); unchanged without."""
    values = resume_values(argv)
    if values and ("-m" in argv or "--multirun" in argv):
        return resume_jobs(argv, values[-1])
    if not values:
        return argv
    checkpoint = find_checkpoint(values[-1])
    run_dir = run_dir_of(checkpoint)
    new = [a for a in argv if override_key(a) != "resume"]
    typed = {override_key(a) for a in new if "=" in a}
    in_place = holds_a_run(run_dir)
    if in_place:
        check_not_moved(run_dir, new, values[-1])
        check_writable(run_dir)
        require(
            os.environ.get("RANK", "0") != "0" or hold(run_dir),
            f"cannot resume {run_dir}: another nntrain process is training that run right now; "
            "let it finish (or stop it with Ctrl-C), then resume.",
        )
    # A checkpoint kept on its own: its own config (overrides) drives the resume, and its run
    # goes on in a new run directory, named <name>-resumed unless the user names it.
    replayed = with_recorded_files(
        own_overrides(run_dir, checkpoint) if in_place else overrides_of_loose(checkpoint, typed),
        checkpoint,
    )
    options, overrides = split_options(new)
    if not {"--config-dir", "-cd"} & set(options) and not any(
        o.startswith("--config-dir=") for o in options
    ):
        options += run_config_dir(run_dir)
    return [
        *options,
        *[o for o in replayed if not typed_over(override_key(o), typed)],
        *overrides,
        f"resume={quoted(checkpoint)}",
        *([f"hydra.run.dir={quoted(run_dir)}"] if in_place else []),
        # Hydra would rewrite the run's .hydra/ before the resume is checked; nntrain writes it
        # once the resume is accepted (write_hydra_files), so a refused one changes nothing.
        "hydra.output_subdir=null",
    ]


def with_recorded_files(replayed: list[str], checkpoint: Path) -> list[str]:
    """The run's own data file overrides (data.path=t.csv, as typed: relative to the folder it
    started in) as the absolute paths its checkpoint records, so a run resumed from another
    folder reads the same files."""
    keys = {f"data.{key}" for key in DATA_FILE_KEYS}
    if not any(override_key(o) in keys for o in replayed):
        return replayed

    from nntrain.checkpoint import load_resumable

    data = (files.load_yaml(load_resumable(checkpoint).get("config") or "") or {}).get("data")
    recorded = {f"data.{k}": v for k, v in (data or {}).items() if f"data.{k}" in keys}
    return [
        f"{override_key(o)}={quoted_value(str(recorded[override_key(o)]))}"
        if override_key(o) in keys and os.path.isabs(str(recorded.get(override_key(o)) or ""))
        else o
        for o in replayed
    ]


def resume_jobs(argv: list[str], target: str) -> list[str]:
    """`nntrain -m hydra/launcher=slurm resume=<job dir | sweep dir>`: the job, or every job of
    the sweep that did not finish, again in the sweep's directory. The launcher
    (hydra_plugins.nntrain_slurm_launcher) gives each its own overrides, directory and last.pt."""
    require(
        target != "latest",
        "resume=latest continues one run, without -m: nntrain resume=latest; in a sweep (-m) "
        "resume= takes a job directory or a sweep directory.",
    )
    folder = Path(os.path.expanduser(target.strip("'\""))).absolute()
    require(
        folder.is_dir(),
        f"resume={target}: {folder} is not a directory; in a sweep (-m) resume= takes a job "
        "directory or a sweep directory.",
    )
    require(
        any(a.split("=", 1)[1].strip() == "slurm" for a in argv if a.startswith("hydra/launcher=")),
        f"resume={target} with -m needs hydra/launcher=slurm (it gives each job its own "
        f"overrides); resume one job of a local sweep with nntrain resume={target}.",
    )
    if (folder / ".hydra").is_dir():  # one job
        jobs, sweep_dir = [folder], folder.parent
    else:
        sweep_dir = folder
        jobs = [job for job in sorted(folder.iterdir()) if (job / ".hydra").is_dir()]
        require(bool(jobs), f"resume={target}: {folder} holds no jobs of a sweep.")
        jobs = [job for job in jobs if job_status(job) != "ok"]
        require(bool(jobs), f"resume={target}: every job of {folder} finished; nothing to resume.")
    return [
        *(a for a in argv if override_key(a) not in ("resume", "hydra.sweep.dir")),
        "resume=" + ",".join(quoted(job) for job in jobs),
        f"hydra.sweep.dir={quoted(sweep_dir)}",
    ]


def job_status(job_dir: Path) -> str | None:
    import json

    path = job_dir / "status.json"
    return json.loads(path.read_text()).get("status") if path.is_file() else None


def check_not_moved(run_dir: Path, argv: list[str], target: str) -> None:
    """A run continues in its own directory: hydra.run.dir=ELSEWHERE, which was silently
    ignored, is refused unless it names that same directory."""
    given = [a.split("=", 1)[1] for a in argv if a.split("=", 1)[0] == "hydra.run.dir"]
    if not given:
        return
    folder = Path(os.path.expanduser(given[-1].strip("'\""))).absolute()
    require(
        folder.resolve() == run_dir.resolve(),
        f"resume={target} continues the run in its own directory, {run_dir}; hydra.run.dir="
        f"{given[-1]} cannot move it there: drop hydra.run.dir, or copy the run first "
        f"(cp -r {run_dir} {given[-1]}) and resume the copy (nntrain resume={given[-1]}).",
    )


def check_writable(run_dir: Path) -> None:
    """A run continues in its own directory: refused before Hydra opens its train.log there."""
    from nntrain.files import writable_folder

    require(
        writable_folder(run_dir / CHECKPOINTS) and writable_folder(run_dir),
        f"cannot resume {run_dir}: the run directory is not writable (a read-only disk, or "
        "another user's files); copy it to a folder you can write to and resume the copy, e.g. "
        f"cp -r {run_dir} ~/{run_dir.name} && nntrain resume=~/{run_dir.name}",
    )


def typed_over(key: str, typed: set[str]) -> bool:
    """Whether a replayed override's key is set anew on the command line: the same key, or
    its group chosen anew (model=cnn drops the run's model.hidden=[24], which would not even
    compose; the resume is then refused naming what differs)."""
    return key in typed or key.split(".", 1)[0] in typed


def overrides_of_loose(checkpoint: Path, typed: set[str]) -> list[str]:
    """The overrides a checkpoint's run was started with (kept in its checkpoints; none in
    those of nntrain before 2026-11-30, whose config is then compared with the defaults), and
    the new run's name, `<the run's name>-resumed`, unless the user or the run set one."""
    from nntrain.checkpoint import load_resumable

    saved = load_resumable(checkpoint)
    overrides = [with_moved_key(str(o)) for o in saved.get("overrides") or []]
    if "name" in typed:
        return overrides
    config = files.load_yaml(saved.get("config") or "") or {}
    name = config.get("name") if isinstance(config, dict) else None
    renamed = f"name={quoted_value(f'{name or checkpoint.stem}-resumed')}"
    return [*[o for o in overrides if override_key(o) != "name"], renamed]


def resumes_in_place(argv: list[str]) -> bool:
    """Whether the command line resumes a run in its own directory (resume= of a run directory
    or of a checkpoint in one), rather than a checkpoint kept on its own."""
    values = resume_values(argv)
    return bool(values) and holds_a_run(run_dir_of(find_checkpoint(values[-1])))


def quoted_value(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def quoted(path: Path) -> str:
    """A path as a quoted Hydra override value: spaces, commas or = in it stay literal."""
    return quoted_value(str(path))

