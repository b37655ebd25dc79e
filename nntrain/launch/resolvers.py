"""The resolvers nntrain's configs name: ${nntrain.path_safe:...} and ${nntrain.new_run_dir:...}
(configs/hydra/default.yaml: the run and sweep directories) and ${nntrain.starts_pretrained:...}
(data.imagenet_normalization's default).

Registered on import, before Hydra resolves the run dir: every command imports this module
(through nntrain.launch.run_dirs), and so do launchers' worker processes, which import the
command they run.
"""

from __future__ import annotations

import re
import sys

from omegaconf import OmegaConf

from nntrain import runs
from nntrain.data.settings import starts_pretrained
from nntrain.errors import UserError


def path_safe(name: object) -> str:
    """`name` as one directory name, for the run dir outputs/<date>/<time>-<name>: every run of
    characters other than ASCII letters, digits, '.', '_' and '-' becomes one '_', so a name such
    as 'cnn on cifar/v2' neither nests directories nor needs quoting, in a shell or in a Hydra
    override (the run summary's `nntrain-eval ckpt=<run dir>`: Hydra's lexer rejects 'é')."""
    safe = re.sub(r"[^\w.-]+", "_", "" if name is None else str(name), flags=re.ASCII)
    return safe.strip("_") or "unnamed"


# configs/hydra/default.yaml names run dirs with ${nntrain.path_safe:${name}}. Cached like ${now:...}: OmegaConf caches by the argument's text, and Hydra copies the sweep's
# cache into every job's config, so all jobs of `-m model=cnn,mlp` share one sweep dir (named
# as the config composes without the swept values) instead of one each per <model>-<data>.
OmegaConf.register_new_resolver("nntrain.path_safe", path_safe, replace=True, use_cache=True)


OmegaConf.register_new_resolver("nntrain.starts_pretrained", starts_pretrained, replace=True)


def new_run_dir(base: str) -> str:
    """The run (or sweep) directory base, or base-2, base-3, ... when a run holds it, claimed
    for this run (nntrain.runs.claim_new). Under torchrun rank 0 claims it and every rank gets
    rank 0's answer. Cached, so that Hydra's every resolution of hydra.run.dir gives the same."""
    from nntrain.training import distributed

    if {"--cfg", "-c", "--info", "-i"} & set(sys.argv[1:]):  # only printing: claim nothing
        return base

    def claimed() -> str:
        try:
            return str(runs.claim_new(base))
        except OSError as error:  # read-only, no such device, permissions
            raise UserError(
                f"cannot create the run directory {base} ({error.strerror or error}); run nntrain "
                "in a folder you can write to, or set hydra.run.dir to a writable place."
            ) from error

    if distributed.world_size() > 1:
        return str(distributed.broadcast_from_main(claimed() if distributed.rank() == 0 else None))
    return claimed()


OmegaConf.register_new_resolver("nntrain.new_run_dir", new_run_dir, replace=True, use_cache=True)

