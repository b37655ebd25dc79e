"""Building objects from config nodes: hydra.utils.instantiate, with the user's mistakes turned
into one-sentence UserErrors."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from nntrain.errors import UserError, first_line


def build(node: DictConfig, group: str, **kwargs: Any) -> Any:
    """The object a config group's node describes (`_target_` and its arguments); kwargs are
    arguments the config does not hold (e.g. a model's input_shape, known from the data)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        reason = first_line(cause or error)
        raise UserError(
            f"could not build {group} from {node.get('_target_')}: {reason}; check the {group}.* "
            "values (`nntrain --cfg job` shows them)."
        ) from error
