"""Building objects from config nodes: hydra.utils.instantiate, with the user's mistakes turned
into one-sentence UserErrors."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from nntrain.errors import UserError, first_line

# What nntrain calls a model or data class with (README: "Your own model", "Your own data").
CONTRACTS = {
    "model": "a model class must take the keyword arguments input_shape (a tuple) and "
    "num_classes (an int; 1 for regression) plus the keys of its config file (README: "
    '"Your own model").',
}


def unimportable(what: str, target: str, error: ImportError) -> str:
    """One sentence: `what` cannot be imported, and which module to put on the path."""
    root = error.__cause__ if isinstance(error.__cause__, ImportError) else error
    module = getattr(root, "name", None) or target.rpartition(".")[0]
    return (
        f"{what} cannot be imported ({first_line(root)}); put the folder that holds the module "
        f"{module} on the Python path (e.g. PYTHONPATH=/path/to/your/code) or pip install its "
        "package."
    )


def check_importable(target: str, what: str) -> None:
    """Raise a UserError naming the module to put on the path unless `target` imports."""
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
        cause = error.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        target = str(node.get("_target_"))
        if isinstance(cause, ImportError):
            raise UserError(unimportable(f"the {group} class {target}", target, cause)) from error
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
