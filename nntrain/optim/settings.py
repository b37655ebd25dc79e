"""optimizer.* and scheduler.*: the settings of nntrain's optimizer and schedule options,
declared once (nntrain.schema). Each option (optimizer=sgd, scheduler=cosine) is its dataclass's
defaults; a class of the user's own (optimizer._target_=...) brings its own settings.

Checks that need the built optimizer (scheduler.min_lr below the optimizer's lr, a momentum for
OneCycle to cycle) stay with the schedules: they compare two groups at run time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from nntrain.schema import Settings, setting

LR = "a number > 0"
DECAY = "a number >= 0"
FRACTION = "a number in [0, 1)"


@dataclass
class OptimizerSettings(Settings):
    """What every optimizer option has: its torch class, lr and weight decay, and torch's
    rarer keys a user may add (+optimizer.maximize=true)."""

    KEY: ClassVar[str] = "optimizer"

    _target_: str = setting("torch.optim.AdamW", "the optimizer class")
    _partial_: bool = setting(True, "built with the model's parameter groups later")
    lr: float = setting(1e-3, "the learning rate", expects=LR, example="1e-3")
    weight_decay: float = setting(
        0.0, "L2 penalty (none on biases and normalisation weights)", expects=DECAY
    )
    maximize: bool = setting(False, "maximise the objective instead", extra=True)
    foreach: bool | None = setting(
        None,
        "torch's multi-tensor kernel (trainer.fused_optimizer chooses by default)",
        extra=True,
    )
    fused: bool | None = setting(
        None, "torch's fused kernel (trainer.fused_optimizer chooses by default)", extra=True
    )
    layer_decay: float | None = setting(
        None,
        "layer-wise lr decay: each layer below the head at this x the lr of the one above "
        "(model=timm; replaces model.backbone_lr_scale)",
        expects="a number in (0, 1]",
        example=0.75,
        extra=True,
    )

    def __post_init__(self) -> None:
        self.must("lr", self.lr > 0)
        self.must("weight_decay", self.weight_decay >= 0)
        self.must("layer_decay", self.layer_decay is None or 0 < self.layer_decay <= 1)


@dataclass
class AdamSettings(OptimizerSettings):
    """Adam (optimizer=adam)."""

    _target_: str = setting("torch.optim.Adam", "the optimizer class")
    betas: list[float] = setting(
        [0.9, 0.999],
        "decay rates of the gradient's running mean and square",
        expects="two numbers in [0, 1)",
    )
    eps: float = setting(1e-8, "added to the denominator", expects=DECAY, extra=True)
    amsgrad: bool = setting(False, "the AMSGrad variant", extra=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.must("betas", len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas))
        self.must("eps", self.eps >= 0)


@dataclass
class AdamWSettings(AdamSettings):
    """AdamW: decoupled weight decay (optimizer=adamw, the default)."""

    _target_: str = setting("torch.optim.AdamW", "the optimizer class")
    weight_decay: float = setting(
        1e-4, "decoupled weight decay (none on biases and normalisation weights)", expects=DECAY
    )


@dataclass
class SGDSettings(OptimizerSettings):
    """SGD with (Nesterov) momentum (optimizer=sgd)."""

    _target_: str = setting("torch.optim.SGD", "the optimizer class")
    lr: float = setting(0.05, "the learning rate", expects=LR, example="1e-3")
    momentum: float = setting(0.9, "momentum factor", expects=FRACTION)
    nesterov: bool = setting(True, "Nesterov momentum (needs momentum > 0)")
    weight_decay: float = setting(
        5e-4, "L2 penalty (none on biases and normalisation weights)", expects=DECAY
    )
    dampening: float = setting(0.0, "dampening for momentum", expects=DECAY, extra=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.must("momentum", 0 <= self.momentum < 1)
        self.must("dampening", self.dampening >= 0)
        self.must(
            "nesterov",
            not self.nesterov or (self.momentum > 0 and self.dampening == 0),
            expects="false unless optimizer.momentum > 0 and optimizer.dampening = 0 (Nesterov "
            "momentum needs a momentum)",
            example=False,
        )


@dataclass
class RMSpropSettings(OptimizerSettings):
    """RMSprop (optimizer=rmsprop)."""

    _target_: str = setting("torch.optim.RMSprop", "the optimizer class")
    alpha: float = setting(0.99, "smoothing of the squared gradient's average", expects=FRACTION)
    momentum: float = setting(0.0, "momentum factor", expects=FRACTION)
    eps: float = setting(1e-8, "added to the denominator", expects=DECAY, extra=True)
    centered: bool = setting(False, "normalise by the gradient's variance", extra=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.must("alpha", 0 <= self.alpha < 1)
        self.must("momentum", 0 <= self.momentum < 1)
        self.must("eps", self.eps >= 0)


WARMUP = "a number of epochs >= 0"


@dataclass
class ScheduleSettings(Settings):
    """What every schedule option has: its function, called with the optimizer and the run's
    step counts once training starts."""

    KEY: ClassVar[str] = "scheduler"

    _target_: str = setting("nntrain.optim.schedules.constant", "the schedule function")
    _partial_: bool = setting(True, "called with the optimizer and step counts later")


@dataclass
class ConstantSettings(ScheduleSettings):
    """The optimizer's lr throughout, after an optional linear warmup (scheduler=constant)."""

    warmup_epochs: float = setting(0, "linear warmup from lr/steps to lr", expects=WARMUP)

    def __post_init__(self) -> None:
        self.must("warmup_epochs", self.warmup_epochs >= 0)


@dataclass
class CosineSettings(ScheduleSettings):
    """Linear warmup, then cosine decay to min_lr over the remaining optimizer steps:
    lr_t = min_lr + 0.5 (lr - min_lr)(1 + cos(pi t / T)) (scheduler=cosine, the default)."""

    _target_: str = setting("nntrain.optim.schedules.warmup_cosine", "the schedule function")
    warmup_epochs: float = setting(1, "linear warmup from lr/steps to lr", expects=WARMUP)
    min_lr: float = setting(
        0.0,
        "the lr at the end (of the group with the largest lr; the others in proportion)",
        expects="a number between 0 and the optimizer's lr",
    )

    def __post_init__(self) -> None:
        self.must("warmup_epochs", self.warmup_epochs >= 0)
        self.must("min_lr", self.min_lr >= 0)


@dataclass
class StepSettings(ScheduleSettings):
    """The lr times gamma every step_epochs epochs (scheduler=step)."""

    _target_: str = setting("nntrain.optim.schedules.step_decay", "the schedule function")
    step_epochs: float = setting(10, "epochs between reductions", expects="a number > 0")
    gamma: float = setting(
        0.1,
        "the lr's factor at each step",
        expects="a number in (0, 1] (the lr's factor at each step)",
    )
    warmup_epochs: float = setting(0, "linear warmup from lr/steps to lr", expects=WARMUP)

    def __post_init__(self) -> None:
        self.must("step_epochs", self.step_epochs > 0)
        # A negative gamma flips the lr's sign, 0 stops training, > 1 grows it.
        self.must("gamma", 0 < self.gamma <= 1)
        self.must("warmup_epochs", self.warmup_epochs >= 0)


@dataclass
class TriangleSettings(ScheduleSettings):
    """Linear from start_factor x lr up to lr at peak_fraction of the run, then down to
    end_factor x lr (the airbench speedruns' schedule; scheduler=triangle)."""

    _target_: str = setting("nntrain.optim.schedules.triangle", "the schedule function")
    peak_fraction: float = setting(0.23, "where the lr peaks", expects="a number in [0, 1]")
    start_factor: float = setting(0.2, "the first step's lr / lr", expects=DECAY)
    end_factor: float = setting(0.07, "the last step's lr / lr", expects=DECAY)

    def __post_init__(self) -> None:
        self.must("peak_fraction", 0 <= self.peak_fraction <= 1)
        self.must("start_factor", self.start_factor >= 0)
        self.must("end_factor", self.end_factor >= 0)


@dataclass
class OneCycleSettings(ScheduleSettings):
    """torch's OneCycleLR over the run's optimizer steps (scheduler=onecycle)."""

    _target_: str = setting("nntrain.optim.schedules.one_cycle", "the schedule function")
    max_lr: float | None = setting(
        None,
        "the peak; null = optimizer.lr (each parameter group's own lr)",
        expects="a number > 0 or null (the optimizer's lr)",
    )
    pct_start: float = setting(0.3, "share of the run spent going up", expects="a number in [0, 1]")
    anneal_strategy: Literal["cos", "linear"] = setting("cos", "cos or linear")
    div_factor: float = setting(25.0, "the start: max_lr / div_factor", expects="a number > 0")
    final_div_factor: float = setting(
        10000.0, "the end: start / final_div_factor", expects="a number > 0"
    )
    three_phase: bool = setting(
        False, "true: back down to the start lr symmetrically, then to the end lr"
    )
    cycle_momentum: bool = setting(
        True,
        "momentum (SGD) or Adam's beta1 from 0.95 down to 0.85 and back; false = leave it",
    )

    def __post_init__(self) -> None:
        self.must("max_lr", self.max_lr is None or self.max_lr > 0)
        self.must("pct_start", 0 <= self.pct_start <= 1)
        self.must("div_factor", self.div_factor > 0)
        self.must("final_div_factor", self.final_div_factor > 0)


@dataclass
class PlateauSettings(ScheduleSettings):
    """The lr times factor when the monitored figure has not improved for `patience` epochs
    (torch's ReduceLROnPlateau, stepped after each validation; scheduler=plateau)."""

    _target_: str = setting("nntrain.optim.schedules.plateau", "the schedule function")
    monitor: str | None = setting(
        None, "null = trainer.early_stopping.monitor; or val/loss, val/acc, train/loss, ..."
    )
    mode: Literal["min", "max"] | None = setting(
        None,
        "null = that of the figure (min for losses, max for accuracy)",
        expects="min, max or null (that of the monitored figure)",
    )
    factor: float = setting(0.1, "lr multiplier at each reduction", expects="a number in (0, 1)")
    patience: int = setting(
        3,
        "epochs without improvement before reducing (keep below early stopping's)",
        expects="an integer >= 0 (epochs)",
    )
    threshold: float = setting(0.0001, "smaller changes are not an improvement", expects=DECAY)
    threshold_mode: Literal["rel", "abs"] = setting(
        "rel", "rel: relative to the best; abs: in the figure's units"
    )
    cooldown: int = setting(
        0,
        "epochs to wait after a reduction before counting again",
        expects="an integer >= 0 (epochs)",
    )
    min_lr: float = setting(0.0, "the lr never goes below this", expects=DECAY)

    def __post_init__(self) -> None:
        self.must("factor", 0 < self.factor < 1)
        self.must("patience", self.patience >= 0)
        self.must("threshold", self.threshold >= 0)
        self.must("cooldown", self.cooldown >= 0)
        self.must("min_lr", self.min_lr >= 0)
