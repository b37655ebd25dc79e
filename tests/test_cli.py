"""The `nntrain` command as a user runs it: a subprocess in a fresh working directory."""

import re

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nntrain.checkpoint import load_checkpoint
from nntrain.commands.common import expand_home_in_overrides
from nntrain.errors import UserError
from nntrain.launch.resolvers import path_safe
from nntrain.training.trainer import Trainer
from tests.conftest import compose_config, read_metrics, run_nntrain, single_run_dir
from tests.test_evaluate import run_eval


def test_default_run_trains_digits_to_95_percent_and_writes_the_run_dir(tmp_path):
    done = run_nntrain(cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir = single_run_dir(tmp_path)
    assert re.fullmatch(r"\d\d-\d\d-\d\d-mlp-digits", run_dir.name)  # <time>-<name>
    metrics = read_metrics(run_dir)
    assert metrics["test/acc"] >= 0.95, metrics
    assert {
        "val/acc",
        "test/acc",
        "test/loss",
        "best_epoch",
        "epochs_run",
        "train/samples_per_sec",
    } <= set(metrics)
    counted = re.search(r"MLP: [\d,]+ trainable / ([\d,]+) parameters", done.stdout)
    assert counted and metrics["parameters"] == int(counted.group(1).replace(",", ""))
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    summary = (run_dir / "model_summary.txt").read_text()
    assert f"parameters: {metrics['parameters']:,} " in summary and "Linear" in summary
    assert (run_dir / ".hydra" / "overrides.yaml").is_file()
    log = (run_dir / "train.log").read_text()
    assert "] epoch  train/loss  train/acc  val/loss  val/acc" in log and "test/acc" in log
    assert re.search(r"\]  1/30 +\d\.\d{4} ", log)
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert best["epoch"] == metrics["best_epoch"]

    events = EventAccumulator(str(run_dir))  # a run's events are in its run dir
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "~optimizer/lr",
        "~speed/samples_per_sec",
    } <= tags
    assert len(events.Scalars("val/acc")) == metrics["epochs_run"]

    # what the terminal shows when it is not a TTY: the config tree, plain epoch lines, the summary
    tree = done.stdout[: done.stdout.index("MLP: ")].splitlines()
    assert tree[1] == "├── name: mlp-digits" and len(tree) <= 15, tree  # a few lines, not 59
    assert "├── model: mlp  hidden=[512,256,128]  dropout=0.3" in tree
    # MixUp/CutMix off: its four keys say nothing
    assert "├── data: digits  batch_size=64  val_fraction=0.1  test_fraction=0.2  seed=42" in tree
    header = "epoch  train/loss  train/acc  val/loss  val/acc        lr  samples/s    time"
    rows = done.stdout.splitlines()
    first_row = rows[rows.index(header) + 1]  # one table: the column names once, a row an epoch
    assert re.fullmatch(r" 1/30 +(\d\.\d{4} +){4}\d\.\d\de-0\d +[\d,]+ +\d+\.\ds( +\*)?", first_row)
    assert max(len(row) for row in rows if re.match(r" *\d+/30 ", row)) <= 80
    assert "nntrain: run summary" in done.stdout
    assert re.search(r"│ name +│ mlp-digits", done.stdout)  # the summary names the run
    assert re.search(r"│ wall time +│ (\d+ min \d\d|\d+) s ", done.stdout)
    # paths and commands below the table, whole on one line each (a table cell would cut them)
    shown = run_dir.relative_to(tmp_path)
    assert f"evaluate     nntrain-eval ckpt={shown}" in rows
    assert f"checkpoints  {shown}/checkpoints/best.pt (best epoch), last.pt" in rows
    assert "\r" not in done.stdout  # no progress bar redraws in a pipe


def test_the_run_dir_ends_with_the_name_made_safe_as_one_directory_name(tmp_path):
    done = run_nntrain(
        "trainer=debug", "trainer.max_epochs=1", "name='my run/v2 (α)'", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    run_dir = single_run_dir(tmp_path)  # outputs/<date>/<time>-<name>: not nested deeper
    assert run_dir.name.endswith("-my_run_v2") and (run_dir / "metrics.json").is_file()
    assert "├── name: my run/v2 (α)" in done.stdout  # the label itself is unchanged
    # the summary's commands take the run dir as typed, unquoted
    evaluated = run_eval(f"ckpt={run_dir.relative_to(tmp_path)}", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("mlp-digits", "mlp-digits"),
        ("cifar10_cnn v1.2", "cifar10_cnn_v1.2"),
        ("a/b\\c:d*e", "a_b_c_d_e"),
        ("été 2", "t_2"),  # ASCII only: Hydra's override lexer rejects other letters
        ("../up", ".._up"),  # stays one name: the run dir is <time>-.._up
        (" /", "unnamed"),
        (None, "unnamed"),
        (3, "3"),
    ],
)
def test_path_safe_names(name, safe):
    assert path_safe(name) == safe


def test_python_dash_m_prints_the_composed_config(tmp_path):
    done = run_nntrain("--cfg", "job", "model=cnn", "optimizer=sgd", module=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "_target_: nntrain.models.cnn.CNN" in done.stdout
    assert "_target_: torch.optim.SGD" in done.stdout
    assert "nesterov: true" in done.stdout
    # the values the run gets, not their ${...} references
    assert "\n  seed: 42\n" in done.stdout and "\nname: cnn-digits\n" in done.stdout
    assert "${" not in done.stdout
    assert not (tmp_path / "outputs").exists()


def test_help_lists_the_config_groups_and_their_options(tmp_path):
    done = run_nntrain("--help", cwd=tmp_path)
    assert done.returncode == 0
    for line in (
        "data: cifar10, cifar100, csv, digits, fashion_mnist, imagefolder, mnist, moons, subscription, xor",
        "experiment: cifar10_cnn, cifar10_resnet18_finetune, cifar10_speedrun, fashion_mnist_cnn, mnist_mlp",
        "model: cnn, mlp, resnet18, speedrun, timm, torchvision",
        "optimizer: adam, adamw, rmsprop, sgd",
        "scheduler: constant, cosine, onecycle, plateau, step, triangle",
        "trainer: debug, default",
    ):
        assert line in done.stdout
    # what to do next is discoverable from --help: sweeps, resume, evaluation, prediction
    for hint in (
        "nntrain -m optimizer.lr=",
        "nntrain resume=",
        "nntrain-eval ckpt=",
        "nntrain-predict ckpt=",
    ):
        assert hint in done.stdout, hint


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "model=nope",
            "model=nope is not an option of 'model'; choose one of: cnn, mlp, resnet18, speedrun, "
            "timm, torchvision (e.g. model=cnn).",
        ),
        (
            "trainer.max_epochs=abc",
            "trainer.max_epochs must be a positive integer, got 'abc'; for example trainer.max_epochs=30.",
        ),
        (
            "data.val_fraction=1.5",
            "data.val_fraction must be a number between 0 and 1 (exclusive), or 0 (no validation split), got 1.5; for example data.val_fraction=0.1.",
        ),
        (
            "trainer.max_epoch=3",
            "trainer.max_epoch is not a setting of trainer; did you mean trainer.max_epochs?",
        ),
        (  # keys that moved out of the optimizer group name their new place
            "optimizer.fused=false",
            "optimizer.fused moved to trainer.fused_optimizer; use trainer.fused_optimizer=false instead.",
        ),
        (
            "model=resnet18 optimizer.backbone_lr_scale=0.3",
            "optimizer.backbone_lr_scale moved to model.backbone_lr_scale (a setting of the models "
            "with a pretrained backbone, such as model=resnet18); use model.backbone_lr_scale=0.3 "
            "instead.",
        ),
        (
            "optimizer.lr=-1",
            "optimizer.lr must be a number > 0, got -1; for example optimizer.lr=1e-3.",
        ),
        ("seed=abc", "seed must be an integer >= 0, got 'abc'; for example seed=42."),
        (
            "data=imagefolder",
            "data.root has no value; set it on the command line, e.g. data.root=~/photos.",
        ),
        (
            "+model.width=3",
            "could not build model from nntrain.models.mlp.MLP: MLP.__init__() got an unexpected "
            "keyword argument 'width'; check the model.* values (`nntrain --cfg job` shows them).",
        ),
        (  # Hydra's own answer to this was a traceback (ValueError)
            "=3",
            "'=3' is not an override: nntrain takes key=value words, e.g. model=cnn "
            "trainer.max_epochs=5 (a value with spaces in quotes: key='a b'); `nntrain --help` "
            "lists them.",
        ),
        (
            "data=moons model=cnn",
            "model=cnn needs image data shaped (channels, height, width), but this data set gives 1-dimensional inputs (2,); use model=mlp for tabular data.",
        ),
    ],
)
def test_bad_input_is_one_clear_sentence_and_a_nonzero_exit(override, message, tmp_path):
    done = run_nntrain(*override.split(), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == f"Error: {message}"
    assert "Traceback" not in done.stdout + done.stderr


def test_missing_image_data_stops_before_training_with_the_files_to_place(tmp_path):
    done = run_nntrain(
        "model=cnn",
        "data=cifar10",
        f"data.root={tmp_path / 'data'}",
        "data.download=false",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"Error: CIFAR-10 was not found in {tmp_path / 'data'}; download cifar-10-python.tar.gz from "
        f"https://www.cs.toronto.edu/~kriz/ into {tmp_path / 'data'} (nntrain checks and unpacks them), "
        "or set data.download=true to fetch it."
    )
    assert "train/loss" not in done.stdout  # no epoch ran


@pytest.mark.parametrize(
    "preset", ["mnist_mlp", "fashion_mnist_cnn", "cifar10_cnn", "cifar10_resnet18_finetune"]
)
def test_experiment_presets_compose(preset):
    cfg = compose_config(f"experiment={preset}")
    assert cfg.name == preset
    assert cfg.data.dataset in {"mnist", "fashion_mnist", "cifar10"}
    if preset == "cifar10_resnet18_finetune":
        assert cfg.model.pretrained and cfg.data.imagenet_normalization and cfg.data.resize == 224


def test_tilde_in_an_override_means_the_home_directory(monkeypatch):
    monkeypatch.setenv("HOME", "/home/ada")
    argv = ["data.root=~/flowers", "model=cnn", "hydra.run.dir=~", "~trainer.foo", "a=b~c"]
    assert expand_home_in_overrides(argv) == [
        "data.root=/home/ada/flowers", "model=cnn", "hydra.run.dir=/home/ada", "~trainer.foo", "a=b~c"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "argv,bad",
    [
        (["foo"], "foo"),
        (["model=cnn", "a b=3"], "a b=3"),
        (["+=1"], "+=1"),
        (["--cfg", "job", "lr"], "lr"),
        (["--info", "defaults", "model=cnn", "~model.dropout", "-m", "seed=1,2"], None),
        (["-cn", "train", "--config-dir", "conf", "+x=1", "--resolve"], None),
    ],
)
def test_words_that_are_not_overrides_are_named(argv, bad):
    from nntrain.commands.common import check_override_words

    if bad is None:
        check_override_words(argv, "nntrain")  # options, their values, key=value, ~key
        return
    with pytest.raises(UserError) as error:
        check_override_words(argv, "nntrain-eval")
    assert str(error.value) == (
        f"'{bad}' is not an override: nntrain-eval takes key=value words, e.g. "
        "ckpt=outputs/2026-11-25/10-00-00-mlp-digits split=val (a value with spaces in quotes: "
        "key='a b'); `nntrain-eval --help` lists them."
    )


def test_no_setting_takes_nan_or_inf():
    from nntrain.optim.settings import AdamWSettings
    from nntrain.schema import checked

    for value in (float("inf"), float("nan"), -1.0, 0):
        with pytest.raises(UserError, match=r"^optimizer.lr must be a number > 0, got "):
            checked(AdamWSettings, {"lr": value})
    with pytest.raises(UserError, match=r"^trainer.ema.decay must be"):
        Trainer(ema={"decay": float("nan")})
