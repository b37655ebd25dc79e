"""torch.compile paid once: a persistent cache for what it compiles, and its time on its own line.

Inductor keeps the graphs it compiled (its FX-graph cache, the AOTAutograd cache and, on CUDA,
the Triton kernels) on disk under TORCHINDUCTOR_CACHE_DIR; torch's default is a per-user folder
under /tmp, which a reboot or a tmp cleaner empties. nntrain points it at ~/.cache/nntrain/inductor
($XDG_CACHE_HOME/nntrain/inductor) unless TORCHINDUCTOR_CACHE_DIR is set, so a second run of the
same configuration loads the compiled step instead of compiling it again.

Whether the cache was warm is read from torch's own counters of FX-graph cache hits and misses
(torch._dynamo.utils.counters["inductor"]), taken before and after the first compiled step:
hits and no misses is a warm cache, misses and no hits a cold one.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from nntrain.errors import require

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def require_a_cxx_compiler(what: str, off: str) -> None:
    """torch.compile on a CPU: inductor builds C++ kernels, and without a compiler the first
    step fails with a page of traceback; say so before training. `what` needs it, `off` avoids it."""
    compilers = (os.environ.get("CXX", ""), "g++", "c++", "clang++")
    require(
        any(name and shutil.which(name) for name in compilers),
        f"{what} needs a C++ compiler (g++ or clang++ on PATH, or $CXX); install one or set {off}.",
    )


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nntrain" / "inductor"


def can_write(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def torch_default_cache_dir() -> Path:
    """Inductor's own default folder (/tmp/torchinductor_<user>)."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir as torch_default
    except ImportError:  # another torch layout: its documented default
        import getpass
        import tempfile

        return Path(tempfile.gettempdir()) / f"torchinductor_{getpass.getuser()}"
    return Path(torch_default())


def use_persistent_cache() -> Path:
    """Turn inductor's on-disk caches on, in ~/.cache/nntrain/inductor unless
    TORCHINDUCTOR_CACHE_DIR names another folder (inductor reads it at each use); returns it.

    Importing torch._dynamo sets TORCHINDUCTOR_CACHE_DIR to inductor's default under /tmp when
    it is unset, so that value counts as unset here: only a folder the user chose is kept."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    given = os.environ.get(CACHE_ENV)
    if not given or Path(given).resolve() == torch_default_cache_dir().resolve():
        lasting = default_cache_dir()
        # A home that cannot be written (read-only, or ~/.cache a file) keeps torch's folder.
        os.environ[CACHE_ENV] = str(lasting if can_write(lasting) else torch_default_cache_dir())
    inductor_config.fx_graph_cache = True
    functorch_config.enable_autograd_cache = True
    return Path(os.environ[CACHE_ENV])


@dataclass(frozen=True)
class CacheCounts:
    """torch's running counts of FX-graph cache hits and misses in this process."""

    hits: int
    misses: int

    @classmethod
    def now(cls) -> CacheCounts:
        from torch._dynamo.utils import counters

        inductor = counters["inductor"]
        return cls(inductor["fxgraph_cache_hit"], inductor["fxgraph_cache_miss"])


def describe_compilation(seconds: float, before: CacheCounts, after: CacheCounts) -> str:
    """The log line of the first compiled step: its time and whether the cache was warm."""
    hits, misses = after.hits - before.hits, after.misses - before.misses
    if hits and not misses:
        cache = f"warm cache: {hits} compiled graph{'s' * (hits != 1)} loaded"
    elif misses and not hits:
        cache = f"cold cache: {misses} graph{'s' * (misses != 1)} compiled and saved"
    elif hits or misses:
        cache = f"partly warm cache: {hits} graphs loaded, {misses} compiled"
    else:
        cache = "no graph went through the cache"
    folder = os.environ.get(CACHE_ENV, "")
    return (
        f"torch.compile: the first step took {seconds:.1f} s with compilation ({cache}, "
        f"{folder}); left out of epoch 1's time and samples/s"
    )
