"""Seeds and deterministic kernels: a run is a function of its config."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from nntrain.errors import require


def check_seed(seed: object) -> int:
    """Return seed if it is a usable seed, else raise a UserError."""
    require(
        isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0,
        f"seed must be an integer >= 0, got {seed!r}; for example seed=42.",
    )
    # torch's generators take seeds below 2**64; a larger one failed later, while building
    # the data, with "Overflow when unpacking long long".
    require(
        seed < 2**64,  # type: ignore[operator]
        f"seed must be below 2**64 (torch's generators take 64 bits), got {seed}; for example "
        "seed=42.",
    )
    return seed  # type: ignore[return-value]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and every CUDA device) generators."""
    check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """Deterministic kernels when asked (bitwise-repeatable runs); otherwise let cuDNN pick the
    fastest convolution algorithms for the shapes it sees."""
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; it must be set before first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Only when it changes anything: the call imports torch._inductor (about 1.5 s).
    if torch.are_deterministic_algorithms_enabled() != deterministic:
        torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic


def capture_rng_state() -> dict[str, Any]:
    """Every global generator's state, as tensors and plain numbers (safe for weights_only)."""
    legacy = np.random.get_state(legacy=True)
    assert isinstance(legacy, tuple)  # legacy=True: the tuple form, not a dict
    _, keys, position, has_gauss, cached_gaussian = legacy
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {
            "version": version,
            "internal": torch.tensor(internal),
            "gauss_next": gauss_next,
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo capture_rng_state: the generators continue exactly where they were."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate(
        (
            python_state["version"],
            tuple(python_state["internal"].tolist()),
            python_state["gauss_next"],
        )
    )
    if (
        "cuda" in state
        and torch.cuda.is_available()
        and len(state["cuda"]) == torch.cuda.device_count()
    ):
        torch.cuda.set_rng_state_all(state["cuda"])
