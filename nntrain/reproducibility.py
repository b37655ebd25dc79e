"""Seeds and deterministic kernels: a run is a function of its config."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from nntrain.errors import require


def check_seed(seed: object) -> int:
    """Return seed if it is a usable seed, else raise a UserError."""
    require(
        isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0,
        f"seed must be an integer >= 0, got {seed!r}; for example seed=42.",
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
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic
