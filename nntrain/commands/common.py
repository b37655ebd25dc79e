"""What every command shares: running a Hydra app so that each mistake a user can make ends as
one sentence on stderr and a non-zero exit, never a traceback.

UserErrors (bad values, missing files) are printed by `user_errors_end_in_one_line`; Hydra's
own composition errors (unknown group, option or key) by `run_app`, via describe_config_error.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nntrain.errors import UserError, first_line, require
from nntrain.launch.resume import MOVED_KEYS


@contextlib.contextmanager
def user_errors_end_in_one_line() -> Iterator[None]:
    """A UserError raised inside ends as `Error: <its sentence>` on stderr and exit status 1;
    so does an error of OmegaConf's resolving a value (a bad ${...}, or a UserError that a
    resolver raised, which OmegaConf wraps). After Ctrl-C, any error is the KeyboardInterrupt
    it became (see ctrl_c), re-raised as one (inside a Hydra task: Hydra would print "Error
    executing job" for any other)."""
    from omegaconf.errors import OmegaConfBaseException

    from nntrain.reporting.console import print_error

    try:
        yield
    except Exception as error:
        if CTRL_C["seen"]:  # what the KeyboardInterrupt became (see ctrl_c)
            raise KeyboardInterrupt from error
        if isinstance(error, UserError):
            print_error(str(error))
            sys.exit(1)
        if not isinstance(error, OmegaConfBaseException) or os.environ.get("NNTRAIN_DEBUG") == "1":
            raise
        cause = user_error_in(error)
        print_error(str(cause) if cause is not None else describe_omegaconf_error(error))
        sys.exit(1)


# Whether Ctrl-C has raised a KeyboardInterrupt in this process (set by ctrl_c).
CTRL_C = {"seen": False}


def ctrl_c(signum: int, frame: object) -> None:
    """SIGINT while a command runs: Python's KeyboardInterrupt, remembered. Raised in the middle
    of a library's import or lazy set-up it can leave that library half-initialised, and what
    fails next fails with another error (numpy's lazy submodules: a RecursionError); that error
    is the interrupt, reported as one (became_an_interrupt, user_errors_end_in_one_line), not
    as a traceback."""
    CTRL_C["seen"] = True
    raise KeyboardInterrupt


def deliver_a_swallowed_ctrl_c(unraisable: Any) -> None:
    """sys.unraisablehook: a KeyboardInterrupt raised in a callback that Python cannot raise
    from (a weakref's callback in the import system, a __del__) is lost there and printed as
    "Exception ignored in ..." with a traceback; it is delivered to the main thread again
    instead, to end the command as Ctrl-C does. Other errors go to the hook it replaced."""
    import threading

    if isinstance(unraisable.exc_type, type) and issubclass(unraisable.exc_type, KeyboardInterrupt):
        # Sent again a moment later, by another thread: sent from here, SIGINT's handler would
        # raise inside this hook, where the KeyboardInterrupt is swallowed once more.
        again = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
        again.daemon = True
        again.start()
        return
    UNRAISABLE_HOOK["replaced"](unraisable)


# The sys.unraisablehook that deliver_a_swallowed_ctrl_c hands other errors to.
UNRAISABLE_HOOK: dict[str, Callable[[Any], object]] = {"replaced": sys.__unraisablehook__}


@contextlib.contextmanager
def became_an_interrupt() -> Iterator[None]:
    """An error raised after Ctrl-C is re-raised as the KeyboardInterrupt it came from."""
    try:
        yield
    except Exception as error:
        if CTRL_C["seen"]:
            raise KeyboardInterrupt from error
        raise


def user_error_in(error: BaseException) -> UserError | None:
    """The UserError an exception was raised from (directly or further down the chain), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, UserError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def check_no_missing_values(cfg: DictConfig) -> None:
    """Keys set to ??? in the config (such as data.root of imagefolder) must come from the user."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        key = missing[0]
        example = EXAMPLES.get(key, "VALUE")
        raise UserError(f"{key} has no value; set it on the command line, e.g. {key}={example}.")


EXAMPLES = {
    "data.root": "~/photos",
    "ckpt": "outputs/2026-11-25/10-00-00-mlp-digits/checkpoints/best.pt",
    "inputs": "~/new_photos",
}


def expand_home_in_overrides(argv: list[str]) -> list[str]:
    """key=~/path -> key=/home/me/path. Hydra's override grammar rejects an unquoted ~ and the
    shell does not expand it after `=`, yet ~/photos is what users type."""
    expanded = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and not arg.startswith("-") and (value == "~" or value.startswith("~/")):
            arg = f"{key}={os.path.expanduser(value)}"
        expanded.append(arg)
    return expanded


# MixUp/CutMix keys (nntrain.data.mixing): only the image data configs have them.
MIXING_KEYS = ("data.mixup_alpha", "data.cutmix_alpha", "data.mix_switch_prob", "data.mix_prob")


# Training keys that nntrain-eval and nntrain-predict take under their own, shorter names.
TRAINING_KEYS_ELSEWHERE = {"trainer.device": "device", "data.batch_size": "batch_size"}


# Config options that come from an optional extra's package: (extra, what needs it).
EXTRAS = {
    "hydra/launcher/joblib": ("sweep", "hydra/launcher=joblib (parallel local jobs)"),
    "hydra/launcher/submitit_slurm": ("cluster", "hydra/launcher=slurm (SLURM through submitit)"),
    "hydra/launcher/submitit_local": ("cluster", "hydra/launcher=submitit_local"),
}


def describe_config_error(error: Exception, command: str = "nntrain") -> str:
    """One sentence for an error Hydra raised while composing the config from the overrides."""
    from hydra.errors import MissingConfigException

    extra = next((e for name, e in EXTRAS.items() if name in str(error)), None)
    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        extra = EXTRAS.get(error.missing_cfg_file, extra)
    if extra is not None:
        return (
            f"{extra[1]} needs nntrain's `{extra[0]}` extra, which is not installed here; install "
            f"it with: pip install 'nntrain[{extra[0]}]'."
        )
    if isinstance(error, MissingConfigException) and error.options and error.missing_cfg_file:
        group, _, choice = error.missing_cfg_file.rpartition("/")
        options = ", ".join(error.options)
        return f"{group}={choice} is not an option of '{group}'; choose one of: {options} (e.g. {group}={error.options[0]})."
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if lines and "No match in the defaults list" in lines[0]:
        quoted = re.search(r"'([^']+)'", lines[0])
        name = quoted.group(1) if quoted else "that group"
        return (
            f"{name} is not a config group of `{command}`; `{command} --help` lists the groups "
            f"(a new group is added with +{name}=...)."
        )
    ambiguous = re.match(r"Ambiguous value for argument '([^=']+)=(.*)'", lines[0] if lines else "")
    if ambiguous:
        key, value = ambiguous.groups()
        return (
            f"{key}={value} has several values: to sweep over them add -m ({command} -m "
            f"{key}={value}); for a list write {key}=[{value}], for text with commas "
            f"{key}='{value}'."
        )
    if lines and lines[0].startswith("Could not override"):
        return describe_unknown_key(lines, command)
    if "Config search path:" in lines:
        lines = lines[: lines.index("Config search path:")]
    cause = error.__cause__
    detail = [str(cause).splitlines()[0]] if cause is not None and str(cause) else []
    return " ".join(lines + detail)


# Hydra's ValueErrors that a command line causes: two modes at once (-m with --cfg), a group
# set to null (optimizer=null), which Hydra's defaults list cannot hold.
HYDRA_USAGE_ERRORS = ("Only one of --run", "Config group override must be a string")


def describe_usage_error(error: ValueError, argv: list[str], command: str) -> str:
    if str(error).startswith("Only one of --run"):
        return f"{error}; use one of them at a time."
    nulled = next((a.partition("=")[0] for a in argv if a.partition("=")[2] == "null"), "a group")
    return (
        f"{nulled}=null: a config group needs one of its options; choose one "
        f"(`{command} --help` lists them), or leave {nulled}= out for its default."
    )


def describe_unknown_key(lines: list[str], command: str) -> str:
    """Hydra's 'Could not override' (a key the config does not have), as one sentence: a key
    of another data family, a key that moved, a training key given to another command, or a
    misspelling."""
    key = lines[0].removeprefix("Could not override ").strip("'.")
    append = (
        lines[1].removeprefix("To append to your config use ") if len(lines) > 1 else f"+{key}=..."
    )
    value = append.partition("=")[2] or "..."
    if key in MIXING_KEYS:  # a table's data config does not have them
        return (
            f"{key} is a key of the image data (data=digits, mnist, fashion_mnist, cifar10, "
            "cifar100, imagefolder) only: MixUp and CutMix mix images; leave it out for "
            "table data."
        )
    if key in MOVED_KEYS:
        new_key, where = MOVED_KEYS[key]
        return f"{key} moved to {new_key}{where}; use {new_key}={value} instead."
    if command != "nntrain" and key in TRAINING_KEYS_ELSEWHERE:
        own = TRAINING_KEYS_ELSEWHERE[key]
        return f"{key} is a training key; {command} takes {own}=, e.g. {own}={value}."
    from nntrain.commands.schema_check import unknown_key_sentence

    declared = unknown_key_sentence(key, command, append)
    if declared is not None:
        return declared
    return (
        f"'{key}' is not a key of the config; check its spelling (`{command} --cfg job` lists "
        f"every key), or add a new key deliberately with {append}."
    )


def describe_omegaconf_error(error: Exception) -> str:
    """One sentence for an error OmegaConf raised resolving a value, e.g. an interpolation
    ${...} in an override that names no key."""
    message = first_line(error).rstrip(".")
    key = getattr(error, "full_key", None)
    where = f" in {key}" if key else ""
    return (
        f"{message}{where}; check the value (`nntrain --cfg job` shows the config; a literal $ "
        "is written \\$ in an override)."
    )


def quote_plain_values(argv: list[str]) -> list[str]:
    """key=value overrides that Hydra's grammar cannot read as they are (non-ASCII letters as
    in /home/jörg, brackets as in images[raw]) are quoted for the user: key='value'. Values it
    reads (numbers, lists, interpolations, quoted strings) are left alone."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    rewritten = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and not arg.startswith("-") and value and value[0] not in "'\"":
            try:
                parser.parse_override(arg)
            except HydraException:
                escaped = value.replace("\\", "\\\\").replace("'", "\\'")
                arg = f"{key}='{escaped}'"
        rewritten.append(arg)
    return rewritten


# Hydra's options that take the next word as their value (--info's is optional).
OPTIONS_WITH_A_VALUE = {
    "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--cfg", "-c",
    "--package", "-p", "--info", "-i", "--experimental-rerun",
}  # fmt: skip


OVERRIDE_EXAMPLES = {
    "nntrain": "model=cnn trainer.max_epochs=5",
    "nntrain-eval": "ckpt=outputs/2026-11-25/10-00-00-mlp-digits split=val",
    "nntrain-predict": "ckpt=outputs/2026-11-25/10-00-00-mlp-digits inputs=photo.png",
    "nntrain-export": "ckpt=outputs/2026-11-25/10-00-00-mlp-digits format=onnx",
}


def check_override_words(argv: list[str], command: str) -> None:
    """Every word that is not an option is an override: key=value, or ~key to delete one.
    Hydra reads a bare word or `=value` with a parser error (or a traceback); say it plainly."""
    after_option = False
    for arg in argv:
        if arg.startswith("-"):
            after_option = arg in OPTIONS_WITH_A_VALUE
            continue
        if after_option:  # the value of the option before it
            after_option = False
            continue
        key = arg.partition("=")[0].lstrip("+~")
        require(
            (("=" in arg) or arg.startswith("~"))
            and bool(key)
            and not any(c.isspace() for c in key),
            f"'{arg}' is not an override: {command} takes key=value words, e.g. "
            f"{OVERRIDE_EXAMPLES.get(command, OVERRIDE_EXAMPLES['nntrain'])} (a value with "
            f"spaces in quotes: key='a b'); `{command} --help` lists them.",
        )


# A full disk, a quota, a read-only disk, missing permissions: the user's to fix.
UNWRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def describe_unwritable(error: OSError) -> str:
    from nntrain import runs

    where = error.filename or (runs.CLAIMED[-1] if runs.CLAIMED else None)
    what = f"cannot write in {where}" if where else "a write failed"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{what} (no space left on the disk); free some space and run the command again."
    return (
        f"{what} ({error.strerror}); run the command in a folder you can write to (for nntrain, "
        "or set hydra.run.dir to one)."
    )


def remove_claims_left_empty() -> None:
    """A run or sweep directory this process claimed that holds nothing but its claim (and
    Hydra's multirun.yaml: a sweep refused by its sweeper's settings before any job) is not
    left behind."""
    from nntrain import runs

    for folder in runs.CLAIMED:
        if folder.is_dir() and {p.name for p in folder.iterdir()} <= {runs.CLAIM, "multirun.yaml"}:
            (folder / "multirun.yaml").unlink(missing_ok=True)
            runs.remove_unsaved(folder)


def remove_what_a_failed_start_made() -> None:
    """A run dir this process claimed, and in which nothing was saved, is not left behind."""
    from nntrain import runs

    for run_dir in runs.CLAIMED:
        if not runs.saved_any(run_dir):
            runs.remove_unsaved(run_dir)


def resolve_printed_config(argv: list[str]) -> list[str]:
    """`--cfg job` (or all) prints the values the run gets (seed: 42, name: mlp-digits), not
    their ${...} references: Hydra's --resolve is added. `--cfg hydra` stays as Hydra prints
    it (Hydra's own node refers to keys outside it and cannot be resolved alone)."""
    for flag in ("--cfg", "-c"):
        if flag in argv and "--resolve" not in argv:
            index = argv.index(flag)
            if argv[index + 1 : index + 2] in (["job"], ["all"]):
                return [*argv, "--resolve"]
    return argv


def take_over_ctrl_c() -> None:
    """From here on Ctrl-C is a KeyboardInterrupt (see ctrl_c), handled by run_app and in the
    commands; nntrain/commands/entry.py handles the moments before, while Python imports the command."""
    CTRL_C["seen"] = False  # (a process may run several commands: tests)
    signal.signal(signal.SIGINT, ctrl_c)
    if sys.unraisablehook is not deliver_a_swallowed_ctrl_c:
        UNRAISABLE_HOOK["replaced"] = sys.unraisablehook
        sys.unraisablehook = deliver_a_swallowed_ctrl_c


def prepared_command_line(
    argv: list[str], rewrite: Callable[[list[str]], list[str]] | None, command: str
) -> list[str]:
    """The overrides as Hydra should read them: words checked, `~` expanded, plain values
    quoted, then the command's own rewrite (e.g. resume=)."""
    check_override_words(argv, command)
    argv = resolve_printed_config(quote_plain_values(expand_home_in_overrides(argv)))
    return rewrite(argv) if rewrite else argv


def run_app(
    app: Callable[[], Any],
    rewrite: Callable[[list[str]], list[str]] | None = None,
    command: str = "nntrain",
) -> None:
    """Run a Hydra app so that every mistake a user can make ends as one line and exit 1.

    Hydra prints composition errors with its search path and a traceback hint; we let them
    reach us instead (HYDRA_FULL_ERROR=1) and print one sentence. A user who sets
    HYDRA_FULL_ERROR=1 gets Hydra's own full report. `rewrite` may change the command line
    first (e.g. resume=); `~` in override values always means the home directory.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from nntrain.reporting.console import print_error

    # A log line that cannot be written (a full disk) is lost quietly, not printed as a
    # traceback; the error that follows says what happened.
    logging.raiseExceptions = False
    debugging = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        # Inside the try, so that no moment is left between Ctrl-C's two handlings.
        take_over_ctrl_c()
        with became_an_interrupt():
            with user_errors_end_in_one_line():
                sys.argv[1:] = prepared_command_line(sys.argv[1:], rewrite, command)
            app()
    except KeyboardInterrupt:  # before or after the task (composing, importing), or a sweep's
        from nntrain.reporting.sweep_summary import summarize_interrupted_sweep

        summarize_interrupted_sweep()  # in parallel jobs (joblib): the jobs that ended
        print_error("interrupted by SIGINT.")
        sys.exit(130)
    except BrokenPipeError:  # `nntrain --help | head`: the reader has gone, and that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        sys.exit(141)
    except HydraException as error:
        if debugging:
            raise
        print_error(describe_config_error(error, command))
        remove_claims_left_empty()
        sys.exit(1)
    except OmegaConfBaseException as error:  # a resolver's error, or a bad ${...} in a value
        if debugging:
            raise
        with user_errors_end_in_one_line():
            raise error from error.__cause__
    except OSError as error:  # after HydraException: MissingConfigException is an OSError
        if debugging or error.errno not in UNWRITABLE:
            raise
        print_error(describe_unwritable(error))
        remove_what_a_failed_start_made()
        sys.exit(1)
    except ValueError as error:
        if debugging or not str(error).startswith(HYDRA_USAGE_ERRORS):
            raise
        print_error(describe_usage_error(error, sys.argv[1:], command))
        sys.exit(1)
