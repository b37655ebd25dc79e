"""The Hydra config tree of nntrain (installed as nntrain.configs so Hydra finds it via pkg://).

Options whose settings are declared in a schema (nntrain.schema) have no YAML file: their
defaults are stored in Hydra's ConfigStore here, under the same group and name a file would
have (trainer=default). Hydra imports this package before it reads any option, so every way
of composing nntrain's config (the commands, a sweep's jobs, tests) finds them."""

from hydra.core.config_store import ConfigStore

from nntrain.commands.settings import EvalSettings, ExportSettings, PredictSettings
from nntrain.data.settings import (
    Cifar10Settings,
    Cifar100Settings,
    CsvSettings,
    DigitsSettings,
    FashionMnistSettings,
    ImageFolderSettings,
    MnistSettings,
    MoonsSettings,
    SubscriptionSettings,
    XorSettings,
)
from nntrain.optim.settings import (
    AdamSettings,
    AdamWSettings,
    ConstantSettings,
    CosineSettings,
    OneCycleSettings,
    PlateauSettings,
    RMSpropSettings,
    SGDSettings,
    StepSettings,
    TriangleSettings,
)
from nntrain.schema import defaults_of
from nntrain.training.settings import RangeSettings, TrainerSettings

# (group, option, its schema)
SCHEMA_OPTIONS: list[tuple[str, str, type]] = [
    ("trainer", "default", TrainerSettings),
    ("lr_find", "default", RangeSettings),
    ("optimizer", "adam", AdamSettings),
    ("optimizer", "adamw", AdamWSettings),
    ("optimizer", "rmsprop", RMSpropSettings),
    ("optimizer", "sgd", SGDSettings),
    ("scheduler", "constant", ConstantSettings),
    ("scheduler", "cosine", CosineSettings),
    ("scheduler", "onecycle", OneCycleSettings),
    ("scheduler", "plateau", PlateauSettings),
    ("scheduler", "step", StepSettings),
    ("scheduler", "triangle", TriangleSettings),
    ("data", "cifar10", Cifar10Settings),
    ("data", "cifar100", Cifar100Settings),
    ("data", "csv", CsvSettings),
    ("data", "digits", DigitsSettings),
    ("data", "fashion_mnist", FashionMnistSettings),
    ("data", "imagefolder", ImageFolderSettings),
    ("data", "mnist", MnistSettings),
    ("data", "moons", MoonsSettings),
    ("data", "subscription", SubscriptionSettings),
    ("data", "xor", XorSettings),
]


# The commands' own top-level keys: (their config's name in ConfigStore, the command, schema).
# configs/eval.yaml, predict.yaml and export.yaml start from these (their defaults lists).
COMMAND_SETTINGS: list[tuple[str, str, type]] = [
    ("eval_settings", "nntrain-eval", EvalSettings),
    ("predict_settings", "nntrain-predict", PredictSettings),
    ("export_settings", "nntrain-export", ExportSettings),
]


def store_schema_options() -> None:
    store = ConfigStore.instance()
    for group, name, schema in SCHEMA_OPTIONS:
        store.store(group=group, name=name, node=defaults_of(schema), provider="nntrain")
    for name, _, schema in COMMAND_SETTINGS:
        store.store(name=name, node=defaults_of(schema), provider="nntrain")


store_schema_options()
