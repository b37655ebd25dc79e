"""A process that runs one sweep job after another: Python's garbage collector kept off the imports.

After torch's imports (torch.optim imports torch._dynamo and sympy on an optimizer's first use) a
process holds about 400,000 objects that live as long as it does. Every full collection of
Python's cyclic garbage collector walks all of them: 0.18 s each on this project's 2-CPU
machine when idle, up to 0.8 s when loaded. A joblib worker (hydra/launcher=joblib) pays it about twice per job: loky collects after
every call when psutil is missing, and Hydra's per-job plugin scan leaves enough garbage to
start another. In a search of short trials that was a quarter of the workers' time
(scripts/search_benchmark.py).

gc.freeze() moves every object alive into a permanent generation that collections skip. It is
done once per process, at the first sweep job's start, once the modules every job imports are
imported and before the job builds anything: what it freezes is the imports and what Hydra
made for the first job (its config, its scan of the plugins: kept for good, once per process),
never a model, a data set or a device's memory. Later jobs' garbage is collected as before; a
collection just has less to walk.
"""

from __future__ import annotations

import gc

_frozen = False


def keep_collector_off_imports() -> bool:
    """Import what every training job imports, collect, then gc.freeze(); once per process.
    Returns whether it froze now."""
    global _frozen
    if _frozen:
        return False
    import torch._dynamo  # noqa: F401  (torch.optim imports it on an optimizer's first use)

    import nntrain.training.trainer  # noqa: F401

    gc.collect()  # garbage now is not frozen with the rest
    gc.freeze()
    _frozen = True
    return True
