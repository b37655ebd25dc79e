"""trainer.*: every setting of the Trainer, declared once (nntrain.schema). The option
`trainer=default` is these defaults; the Trainer receives them checked.

Only checks that need the machine (a C++ compiler for trainer.compile on a CPU, CUDA for
sync_batchnorm under torchrun) stay with the Trainer: they are about where it runs, not about
the values."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from nntrain.errors import require
from nntrain.schema import Settings, setting
from nntrain.training.early_stopping import MONITORS, NO_MONITOR, REGRESSION_MONITORS

log = logging.getLogger("nntrain")

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
PRECISIONS = ("auto", "32", "bf16", "16")
BATCH_LIMIT = "a number of batches (int >= 1) or a fraction in (0, 1]"


def is_batch_limit(limit: int | float) -> bool:
    """Lightning's convention: an int is a number of batches, a float a fraction of them."""
    return limit >= 1 if isinstance(limit, int) else 0 < limit <= 1


@dataclass
class EarlyStoppingSettings(Settings):
    KEY: ClassVar[str] = "trainer.early_stopping"

    monitor: str = setting(
        "val/acc",
        "the figure that stops the run and picks best.pt: val/acc, val/loss, train/acc, "
        "train/loss, none (the final weights); a regression also val/rmse, val/mae, val/r2",
    )
    mode: Literal["min", "max"] = setting("max", "max for accuracy and R², min for losses")
    patience: int | None = setting(
        7,
        "epochs without improvement before stopping; null = never",
        expects="a positive integer or null (never stop)",
    )
    min_delta: float = setting(
        0.0, "the least change that counts as an improvement", expects="a number >= 0"
    )

    def __post_init__(self) -> None:
        require(
            self.monitor in (*MONITORS, NO_MONITOR, *REGRESSION_MONITORS),
            f"trainer.early_stopping.monitor must be one of {', '.join(MONITORS)}, none (for a "
            f"regression also {', '.join(REGRESSION_MONITORS)}), got {self.monitor!r}.",
        )
        self.must("patience", self.patience is None or self.patience >= 1)
        self.must("min_delta", self.min_delta >= 0)


@dataclass
class CheckpointSettings(Settings):
    KEY: ClassVar[str] = "trainer.checkpoint"

    every_n_steps: int | None = setting(
        None,
        "also write last.pt every N optimizer steps; null = at epoch ends",
        expects="a positive integer or null (at epoch ends)",
        example=100,
    )

    def __post_init__(self) -> None:
        self.must("every_n_steps", self.every_n_steps is None or self.every_n_steps >= 1)


@dataclass
class LookaheadSettings(Settings):
    KEY: ClassVar[str] = "trainer.lookahead"

    every_n_steps: int | None = setting(
        None,
        "pull the weights to a slow average every N steps (airbench); null = off",
        expects="a positive integer or null (off)",
        example=5,
    )
    decay: float = setting(
        0.95,
        "the average's decay is decay**N * (step / total)**decay_power",
        expects="a number in [0, 1]",
    )
    decay_power: float = setting(3.0, "see decay", expects="a number >= 0")
    start_epoch: int = setting(0, "the first epoch that averages", expects="an integer >= 0")

    def __post_init__(self) -> None:
        self.must("every_n_steps", self.every_n_steps is None or self.every_n_steps >= 1)
        self.must("decay", 0 <= self.decay <= 1)
        self.must("decay_power", self.decay_power >= 0)
        self.must("start_epoch", self.start_epoch >= 0)


@dataclass
class EmaSettings(Settings):
    KEY: ClassVar[str] = "trainer.ema"

    decay: float | None = setting(
        None,
        "an exponential moving average of the weights (and buffers), updated every optimizer "
        "step, e.g. 0.999; when on, validation, best.pt and the test use the average; null = off",
        expects="a number in (0, 1) (e.g. 0.999) or null (off)",
        example=0.999,
    )
    warmup: bool = setting(
        False,
        "true: decay_t = min(decay, (1 + t) / (10 + t)), so short runs are not stuck at their "
        "first weights",
    )

    @property
    def enabled(self) -> bool:
        return self.decay is not None

    def __post_init__(self) -> None:
        self.must("decay", self.decay is None or 0 < self.decay < 1)


@dataclass
class TrainerSettings(Settings):
    """trainer.*: how the Trainer trains (trainer=default; trainer=debug changes a few)."""

    KEY: ClassVar[str] = "trainer"

    _target_: str = setting("nntrain.training.trainer.Trainer", "the class that trains")
    max_epochs: int = setting(30, "epochs to train at most", expects="a positive integer")
    device: str = setting("auto", "auto = cuda > mps > cpu; or cpu, cuda, cuda:1, mps")
    precision: str | int = setting(
        "auto",
        "auto (bf16/fp16 autocast on CUDA for models >= 5 M parameters, else fp32), 32, bf16, 16",
        expects="one of auto, 32, bf16, 16",
    )
    grad_clip: float | None = setting(
        1.0,
        "max gradient norm (or value), after unscaling; null = off",
        expects="a number > 0 or null (off)",
    )
    grad_clip_mode: Literal["norm", "value"] = setting(
        "norm",
        "norm: scale the whole gradient to norm <= grad_clip; value: clamp each element to "
        "±grad_clip",
        expects="norm (the gradient's norm) or value (each element)",
    )
    accumulate_grad_batches: int = setting(
        1, "micro-batches per optimizer step", expects="a positive integer", example=2
    )
    early_stopping: EarlyStoppingSettings = field(
        default_factory=EarlyStoppingSettings,
        metadata={"doc": "when to stop, and which epoch is best.pt"},
    )
    limit_train_batches: int | float = setting(
        1.0, "float = fraction of the batches, int = number of batches", expects=BATCH_LIMIT
    )
    limit_val_batches: int | float = setting(1.0, "as limit_train_batches", expects=BATCH_LIMIT)
    deterministic: bool = setting(False, "deterministic kernels: bitwise-repeatable runs")
    progress: bool = setting(True, "live progress bar (only on a terminal, never in multirun)")
    log_every_n_steps: int = setting(
        10,
        "TensorBoard train/* scalars and progress figures (and at each epoch's end)",
        expects="a positive integer",
    )
    channels_last: bool | Literal["auto"] = setting(
        "auto",
        "NHWC memory format: auto = on for conv models on CPU, and on CUDA from 5 M parameters",
        expects="auto, true or false",
    )
    checkpoint: CheckpointSettings = field(
        default_factory=CheckpointSettings, metadata={"doc": "when last.pt is written"}
    )
    report_images: bool = setting(
        True, "at the end: confusion matrix, sample predictions, decision boundary"
    )
    sync_batchnorm: bool = setting(
        False, "under torchrun: BatchNorm statistics over all ranks' batches"
    )
    label_smoothing: float = setting(
        0.0,
        "training loss only (val/test losses are plain cross-entropy)",
        expects="a number in [0, 1)",
    )
    lookahead: LookaheadSettings = field(
        default_factory=LookaheadSettings, metadata={"doc": "airbench's lookahead averaging"}
    )
    ema: EmaSettings = field(
        default_factory=EmaSettings,
        metadata={"doc": "an exponential moving average of the weights"},
    )
    test_time_augmentation: Literal["none", "flip", "flip_translate"] = setting(
        "none", "test score over views of each image: none, flip, flip_translate"
    )
    compile: bool | Literal[COMPILE_MODES] = setting(  # type: ignore[valid-type]
        False,
        "torch.compile the training forward: true, false or a mode (max-autotune, ...)",
        expects=f"true, false or a torch.compile mode ({', '.join(COMPILE_MODES)})",
    )
    cuda_graphs: bool | Literal["auto", "reduce-overhead"] | None = setting(
        "auto",
        "the whole optimizer step without ~100 kernel launches: true = recorded once as one "
        "CUDA graph and replayed; reduce-overhead = compiled whole by torch.compile and "
        "replayed as CUDA graphs; auto = true on CUDA for models under 5 M parameters (not with "
        "fp16, torchrun or an optimizer a graph cannot hold); false (or null) = off",
        expects="auto, true, false or reduce-overhead",
    )
    fused_optimizer: bool | Literal["auto"] = setting(
        "auto",
        "the optimizer's kernel: auto = torch's fused kernel where the optimizer has one for "
        "the device, else the multi-tensor one; false = torch's own choice; true = fused or "
        "refuse to start",
        expects="auto, true or false",
    )
    overfit_batches: int | None = setting(
        0,
        "sanity check: train and validate on the same N training batches (the loss should fall "
        "towards 0); 0 or null = off",
        expects="a number of batches >= 1 (or 0 / null: off)",
        example=2,
    )
    dist_timeout_s: float = setting(
        300.0,
        "under torchrun or srun: how long a rank waits for the others in a collective before "
        "the job ends naming the rank that stopped answering",
        expects="a number of seconds > 0",
    )

    def __post_init__(self) -> None:
        for name in ("max_epochs", "accumulate_grad_batches", "log_every_n_steps"):
            self.must(name, getattr(self, name) >= 1)
        self.must("precision", str(self.precision) in PRECISIONS)
        self.must("grad_clip", self.grad_clip is None or self.grad_clip > 0)
        self.must("limit_train_batches", is_batch_limit(self.limit_train_batches))
        self.must("limit_val_batches", is_batch_limit(self.limit_val_batches))
        self.must("label_smoothing", 0 <= self.label_smoothing < 1)
        self.must("overfit_batches", self.overfit_batches is None or self.overfit_batches >= 0)
        self.must("dist_timeout_s", self.dist_timeout_s > 0)
        if self.overfit_batches is None:
            self.overfit_batches = 0
        if self.cuda_graphs is None:  # null: off, like the other null settings
            self.cuda_graphs = False
        self.warn_of_lookahead_never_running()

    def warn_of_lookahead_never_running(self) -> None:
        ahead = self.lookahead
        if ahead.every_n_steps is not None and ahead.start_epoch >= self.max_epochs:
            log.warning(
                f"trainer.lookahead.start_epoch={ahead.start_epoch} comes after the last epoch "
                f"(with trainer.max_epochs={self.max_epochs} they are 0 to "
                f"{self.max_epochs - 1}): lookahead never runs"
            )


@dataclass(frozen=True)
class RangeSettings(Settings):
    """lr_find.*: the learning-rate range test of nntrain-lr-find."""

    KEY: ClassVar[str] = "lr_find"

    steps: int = setting(
        100,
        "optimizer steps, the lr growing exponentially from min_lr to max_lr",
        expects="an integer >= 10",
    )
    min_lr: float = setting(1e-7, "the first step's lr", expects="a number > 0")
    max_lr: float = setting(10.0, "the last step's lr", expects="a number > 0")
    divergence: float = setting(
        4.0, "stop once the smoothed loss exceeds this times its minimum", expects="a number > 1"
    )
    smoothing: float = setting(
        0.9, "beta of the loss's moving average (0 = raw losses)", expects="a number in [0, 1)"
    )

    def __post_init__(self) -> None:
        self.must("steps", self.steps >= 10)
        self.must("min_lr", self.min_lr > 0)
        self.must("max_lr", self.max_lr > 0)
        require(
            self.min_lr < self.max_lr,
            f"lr_find.min_lr ({self.min_lr}) must be below lr_find.max_lr ({self.max_lr}).",
        )
        self.must("divergence", self.divergence > 1)
        self.must("smoothing", 0 <= self.smoothing < 1)

    def lr_at(self, step: int) -> float:
        """min_lr * (max_lr / min_lr) ** (step / (steps - 1)): evenly spaced on a log scale."""
        # In logs: max_lr / min_lr overflows to inf for a range over 308 decades (1e-300 to
        # 1e300), which made every lr after the first inf.
        low, high = math.log(self.min_lr), math.log(self.max_lr)
        return math.exp(low + (high - low) * step / (self.steps - 1))
