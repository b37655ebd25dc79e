"""Building objects from config nodes: hydra.utils.instantiate, with the user's mistakes turned
into one-sentence UserErrors."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from omegaconf import DictConfig

from nntrain.errors import UserError, first_line

# What nntrain calls a model or data class with (manual: docs/pages/your-own-model.md and
# your-own-data.md).
CONTRACTS = {
    "model": "a model class must take the keyword arguments input_shape (a tuple) and "
    "num_classes (an int; 1 for regression) plus the keys of its config file (manual: "
    "docs/pages/your-own-model.md).",
}


def unimportable(what: str, target: str, error: ImportError, label: str | None = None) -> str:
    """One sentence for a `target` that could not be imported (Hydra wraps every failure in an
    ImportError "Error loading ..." that cuts the real cause off): a module that cannot be
    found (`what` cannot be imported: the Python path), a module that raised while importing
    (its error with file and line), or a module without that name (what it defines instead).
    `label` starts the last two (e.g. model._target_=mynet.Net), `what` when not given."""
    label = label or what
    cause = original_error(error)
    prefixes = {target.rsplit(".", n)[0] for n in range(target.count(".") + 1)}
    looked_up = isinstance(cause, AttributeError) or (
        isinstance(cause, ModuleNotFoundError) and cause.name in prefixes
    )
    if looked_up:
        missing = missing_attribute(target)
        if missing is not None:
            return f"{label}: {missing}."
        root = cause if isinstance(cause, ImportError) else error
        module = getattr(root, "name", None) or target.rpartition(".")[0]
        return (
            f"{what} cannot be imported ({first_line(root)}); put the folder that holds the "
            f"module {module} on the Python path (e.g. PYTHONPATH=/path/to/your/code) or pip "
            "install its package."
        )
    module = target.rpartition(".")[0] or target
    failure = (
        f"{label}: importing {module} failed: {type(cause).__name__}: {error_text(cause)}"
        f"{where_raised(cause)}"
    )
    if isinstance(cause, ModuleNotFoundError) and cause.name:  # a module the user's imports
        return (
            f"{failure}; install the package that provides {cause.name} (or put the folder "
            "that holds it on the Python path)."
        )
    return f"{failure}."


def original_error(error: BaseException) -> BaseException:
    """The error under Hydra's wrappers (InstantiationException, its ImportError "Error
    loading ..."): what the user's module raised, or the import system's own error."""
    from hydra.errors import InstantiationException

    while error.__cause__ is not None and (
        isinstance(error, InstantiationException)
        or (type(error) is ImportError and str(error).startswith("Error loading"))
    ):
        error = error.__cause__
    return error


def missing_attribute(target: str) -> str | None:
    """The sentence "mynet has no Net; it defines: ..." when the module (or class) that
    `target` names a part of is imported and lacks that part; None when none of it was found
    (the module is not on the path)."""
    import sys

    parts = target.split(".")
    for end in range(len(parts) - 1, 0, -1):
        owner_name = ".".join(parts[:end])
        owner = sys.modules.get(owner_name)
        if owner is None:
            continue
        for part in parts[end:]:
            if not hasattr(owner, part):
                listed = f"; {defined_in(owner, part)}" if isinstance(owner, ModuleType) else ""
                return f"{owner_name} has no {part}{listed}"
            owner, owner_name = getattr(owner, part), f"{owner_name}.{part}"
        return None
    return None


def defined_in(module: ModuleType, wanted: str) -> str:
    """What a module defines, for the user to pick from: its public classes and functions (a
    package's include those of its submodules; names it imports from elsewhere are left out),
    those spelled like `wanted` first."""
    import difflib
    import inspect

    def own(value: object) -> bool:
        origin = str(getattr(value, "__module__", ""))
        return origin == module.__name__ or origin.startswith(f"{module.__name__}.")

    found = [
        key
        for key, value in vars(module).items()
        if not key.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and own(value)
    ]
    if not found:
        return "it defines no public class or function"
    close = difflib.get_close_matches(wanted, found, n=3)
    found = close + [name for name in found if name not in close]
    more = f" and {len(found) - 12} more" if len(found) > 12 else ""
    return f"it defines: {', '.join(found[:12])}{more}"


def error_text(error: BaseException) -> str:
    """The error's message without its location (a SyntaxError's str() carries one)."""
    if isinstance(error, SyntaxError) and error.msg:
        return error.msg
    return first_line(error)


def where_raised(error: BaseException) -> str:
    """The location " (mynet.py line 3)": the line of the user's code that raised (a
    SyntaxError's own location; else the innermost frame outside Python, its installed
    packages, Hydra and nntrain), or "" when there is none."""
    import sys
    import sysconfig
    import traceback
    from pathlib import Path

    if isinstance(error, SyntaxError) and error.filename and error.lineno:
        return f" ({shown_path(error.filename)} line {error.lineno})"
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.startswith("<")
    ]
    libraries = {
        Path(path).resolve()
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (path := sysconfig.get_paths().get(key))
    } | {Path(sys.base_prefix).resolve(), Path(__file__).resolve().parent}
    own = [
        frame
        for frame in frames
        if not any(Path(frame.filename).resolve().is_relative_to(lib) for lib in libraries)
    ]
    chosen = (own or frames)[-1:]
    return "".join(f" ({shown_path(f.filename)} line {f.lineno})" for f in chosen)


def shown_path(filename: str) -> str:
    """A file as the user finds it: relative to the working directory when inside it."""
    import os

    relative = os.path.relpath(filename)
    return filename if relative.startswith("..") else relative


def check_importable(target: str, what: str) -> None:
    """Raise a UserError saying why unless `target` imports (see unimportable)."""
    from hydra.utils import get_class

    try:
        get_class(target)
    except ImportError as error:
        raise UserError(unimportable(what, target, error)) from error
    except ValueError:
        pass  # not a class (a function): building it says what is wrong


def build(node: DictConfig, group: str, **kwargs: Any) -> Any:
    """The object a config group's node describes (`_target_` and its arguments); kwargs are
    arguments the config does not hold (e.g. a model's input_shape, known from the data)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        built = instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as error:
        cause, original = error.__cause__, original_error(error)
        if isinstance(original, UserError):  # raised by the user's class (or its module)
            raise original from None
        target = str(node.get("_target_"))
        if isinstance(cause, ImportError):
            what, label = f"the {group} class {target}", f"{group}._target_={target}"
            raise UserError(unimportable(what, target, cause, label)) from error
        reason = first_line(cause or error)
        # The constructor refuses what nntrain passes (input_shape, num_classes): the contract;
        # another unexpected keyword is a config key that the class does not take.
        if (
            isinstance(cause, TypeError)
            and group in CONTRACTS
            and any(str(k) in reason for k in kwargs)
        ):
            raise UserError(
                f"could not build {group} from {target}: {reason}; {CONTRACTS[group]}"
            ) from error
        raise UserError(
            f"could not build {group} from {node.get('_target_')}: {reason}; check the {group}.* "
            "values (`nntrain --cfg job` shows them)."
        ) from error
    if group == "scheduler":
        check_scheduler_arguments(built, str(node.get("_target_")))
    return built


# What the Trainer calls a scheduler partial with, besides the optimizer.
SCHEDULER_CALL = {"total_steps": 1, "steps_per_epoch": 1}


def check_scheduler_arguments(scheduler: Any, target: str) -> None:
    """A partial scheduler is only called when training starts: a scheduler.* key it does not
    take, or a class that does not take the step counts (torch's StepLR), ended there in a
    traceback. Its arguments are checked against its signature now."""
    import inspect

    func = getattr(scheduler, "func", None)
    if func is None:
        return
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # a builtin without a signature: calling it will tell
        return
    keywords = getattr(scheduler, "keywords", {})
    try:
        signature.bind_partial(None, *getattr(scheduler, "args", ()), **keywords)
    except TypeError as error:
        raise UserError(
            f"could not build scheduler from {target}: {error}; check the scheduler.* values "
            "(`nntrain --cfg job` shows them)."
        ) from error
    try:
        signature.bind(None, *getattr(scheduler, "args", ()), **keywords, **SCHEDULER_CALL)
    except TypeError as error:
        raise UserError(
            f"could not build scheduler from {target}: {error}; a scheduler must take the "
            "optimizer and the keyword arguments total_steps and steps_per_epoch (the schedules "
            "of nntrain.optim.schedules do), plus the keys of its config file."
        ) from error
