"""hydra/launcher=slurm's settings: hydra-submitit-launcher's `submitit_slurm` and nntrain's
own, as the structured config configs/hydra/launcher/slurm.yaml starts from.

Its name holds `submitit_slurm`, so that without the cluster extra (nothing registered here)
the missing config's error still names the extra to install (nntrain.commands.common.EXTRAS).
No `from __future__ import annotations` in this module: Hydra's plugin scan runs it without
an entry in sys.modules, where a dataclass cannot resolve annotations given as strings.
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

try:
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
except ImportError:  # no cluster extra: hydra/launcher=slurm then says to install it
    pass
else:

    @dataclass
    class NntrainSlurmQueueConf(SlurmQueueConf):
        _target_: str = "hydra_plugins.nntrain_slurm_launcher.slurm_launcher.SlurmLauncher"
        # While a job waits to start, a line this often (seconds): the jobs' states, SLURM's
        # reason, and the command that cancels them (waiting.py).
        pending_report_s: float = 60.0

    ConfigStore.instance().store(
        group="hydra/launcher", name="submitit_slurm_nntrain", node=NntrainSlurmQueueConf
    )
