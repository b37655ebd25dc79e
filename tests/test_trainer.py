import copy
import json
import math
from functools import partial

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from nntrain.checkpoint import load_checkpoint
from nntrain.commands.train import run
from nntrain.devices import Compute, resolve_precision, use_channels_last
from nntrain.errors import UserError
from nntrain.inference.logits import score
from nntrain.optim.schedules import constant
from nntrain.training.early_stopping import EarlyStopping
from nntrain.training.trainer import Trainer, limit_batches
from tests.conftest import compose_config
from tests.helpers import BlobData


def quiet_trainer(**overrides) -> Trainer:
    settings = {"device": "cpu", "progress": False, "grad_clip": None, "max_epochs": 1}
    return Trainer(**{**settings, **overrides})


def fit(trainer, model, data, run_dir, optimizer=None):
    optimizer = optimizer or partial(torch.optim.SGD, lr=0.1)
    return trainer.fit(model, data, optimizer, partial(constant), run_dir=run_dir)


@pytest.mark.parametrize(
    "model,data",
    [
        ("mlp", "digits"),
        ("mlp", "moons"),
        ("mlp", "xor"),
        ("mlp", "subscription"),
        ("cnn", "digits"),
    ],
)
def test_each_model_trains_on_each_data_set(model, data, tmp_path):
    cfg = compose_config(f"model={model}", f"data={data}", "trainer=debug")
    result = run(cfg, str(tmp_path))
    assert set(result) == {
        "val/acc",
        "val/loss",
        "test/acc",
        "test/loss",
        "best_epoch",
        "epochs_run",
        "train/samples_per_sec",
        "parameters",
    }
    assert result["epochs_run"] == 2 and math.isfinite(result["test/loss"])
    assert 0 <= result["test/acc"] <= 1
    assert json.loads((tmp_path / "metrics.json").read_text()) == result
    assert (tmp_path / "checkpoints" / "best.pt").is_file()
    assert (tmp_path / "checkpoints" / "last.pt").is_file()


def test_cnn_reaches_95_percent_on_digits(tmp_path):
    result = run(compose_config("model=cnn"), str(tmp_path))
    assert result["test/acc"] >= 0.95, result


def test_deterministic_runs_give_bitwise_equal_weights(tmp_path):
    cfg = compose_config("trainer=debug", "trainer.max_epochs=3", "trainer.deterministic=true")
    run(cfg, str(tmp_path / "a"))
    run(cfg, str(tmp_path / "b"))
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = run(
        compose_config(
            "trainer=debug", "trainer.max_epochs=3", "trainer.deterministic=true", "seed=7"
        ),
        str(tmp_path / "c"),
    )
    c = load_checkpoint(tmp_path / "c" / "checkpoints" / "last.pt")["model"]
    assert other and not torch.equal(a["net.1.weight"], c["net.1.weight"])


def test_checkpoints_hold_the_run_state_and_the_config(tmp_path):
    cfg = compose_config(
        "trainer=debug", "trainer.max_epochs=3", "trainer.early_stopping.patience=null"
    )
    result = run(cfg, str(tmp_path))
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    for state in (last, best):
        assert {
            "model",
            "optimizer",
            "scheduler",
            "scaler",
            "epoch",
            "step",
            "best_metric",
            "config",
        } <= set(state)
        assert OmegaConf.create(state["config"]) == OmegaConf.create(
            OmegaConf.to_yaml(cfg, resolve=True)
        )
        assert state["optimizer"]["param_groups"][0]["lr"] == state["scheduler"]["_last_lr"][0]
    assert last["epoch"] == 3 and last["step"] == 3 * 5  # limit_train_batches=5
    assert best["epoch"] == result["best_epoch"]
    assert best["best_metric"] == result["val/acc"]
    assert OmegaConf.create(last["config"]).name == "mlp-digits"


def test_test_metrics_come_from_the_best_checkpoint(tmp_path):
    data = BlobData()
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    result = fit(quiet_trainer(max_epochs=4), model, data, tmp_path)
    fresh = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    fresh.load_state_dict(load_checkpoint(tmp_path / "checkpoints" / "best.pt")["model"])
    scored = score(fresh, data.test_loader(), Compute(torch.device("cpu")))
    assert scored.acc == result["test/acc"] and scored.loss == pytest.approx(result["test/loss"])
    assert result["test/acc"] >= 0.85  # it did learn (3 classes: chance is 0.33)


def test_early_stopping_stops_when_the_metric_stalls(tmp_path):
    # lr=0: the validation loss never changes, so it stops `patience` epochs after the first.
    trainer = quiet_trainer(
        max_epochs=20, early_stopping={"monitor": "val/loss", "mode": "min", "patience": 3}
    )
    model = nn.Linear(4, 3)
    result = fit(trainer, model, BlobData(), tmp_path, optimizer=partial(torch.optim.SGD, lr=0.0))
    assert result["epochs_run"] == 4 and result["best_epoch"] == 1


def test_early_stopping_counts_epochs_without_improvement_beyond_min_delta():
    stopper = EarlyStopping(monitor="val/acc", mode="max", patience=2, min_delta=0.01)
    outcomes = []
    for epoch, value in enumerate([0.5, 0.6, 0.605, 0.62, 0.625, 0.629]):
        outcomes.append((stopper.update(value, epoch), stopper.should_stop))
    assert outcomes == [
        (True, False),
        (True, False),
        (False, False),
        (True, False),
        (False, False),
        (False, True),
    ]
    assert stopper.best == 0.62 and stopper.best_epoch == 3


def test_among_epochs_of_the_best_accuracy_best_pt_is_the_one_with_the_lowest_loss():
    # Iris' 15 validation rows: the accuracy moves in steps of 1/15, so epochs tie. best.pt
    # moves to a tied epoch with a lower val/loss; patience still counts from the first.
    stopper = EarlyStopping(monitor="val/acc", mode="max", patience=3)
    assert stopper.tie_breaker == "val/loss"
    epochs = [(0.8, 0.9), (0.9333, 0.30), (0.9333, 0.25), (0.9333, 0.27), (0.8667, 0.2)]
    best_pt = [stopper.update(acc, epoch, loss) for epoch, (acc, loss) in enumerate(epochs)]
    assert best_pt == [True, True, True, False, False]
    assert (stopper.best, stopper.best_epoch, stopper.improved_epoch) == (0.9333, 2, 1)
    assert stopper.should_stop  # 3 epochs since the accuracy last rose (epoch 1)
    # The state survives a checkpoint; one written before ties has no tie-break fields.
    restored = EarlyStopping(monitor="val/acc", mode="max", patience=3)
    restored.load_state_dict(stopper.state_dict())
    assert restored.state_dict() == stopper.state_dict()
    restored.load_state_dict({"best": 0.9, "best_epoch": 4, "wait": 1})
    assert (restored.improved_epoch, restored.best_tie_break) == (4, math.inf)
    # A loss monitor has no tie-break: an equal loss is no better.
    by_loss = EarlyStopping(monitor="val/loss", mode="min")
    assert by_loss.tie_breaker is None
    assert [by_loss.update(0.5, 0, 0.1), by_loss.update(0.5, 1, 0.0)] == [True, False]


class RecordingSGD(torch.optim.SGD):
    """SGD that records the global gradient norm it is asked to apply."""

    norms: list[float]

    def step(self, closure=None):
        grads = [
            p.grad.flatten() for g in self.param_groups for p in g["params"] if p.grad is not None
        ]
        self.norms.append(float(torch.cat(grads).norm()))
        return super().step(closure)


@pytest.mark.parametrize("grad_clip", [None, 0.05])
def test_clipping_bounds_the_gradient_norm(grad_clip, tmp_path):
    RecordingSGD.norms = []
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3))
    fit(
        quiet_trainer(grad_clip=grad_clip),
        model,
        BlobData(),
        tmp_path,
        optimizer=partial(RecordingSGD, lr=0.5),
    )
    assert len(RecordingSGD.norms) == 240 // 16
    if grad_clip is None:
        assert max(RecordingSGD.norms) > 1.0  # the raw gradients are far larger than the bound
    else:
        assert max(RecordingSGD.norms) <= grad_clip * (1 + 1e-5)


def test_accumulated_micro_batches_equal_one_large_batch(tmp_path):
    torch.manual_seed(0)
    initial = nn.Linear(4, 3)
    results = {}
    for name, batch_size, accumulate, batches in [
        ("accumulated", 8, 4, 4),
        ("large", 32, 1, 1),
        ("small", 8, 1, 4),
    ]:
        model = copy.deepcopy(initial)
        trainer = quiet_trainer(accumulate_grad_batches=accumulate, limit_train_batches=batches)
        fit(trainer, model, BlobData(batch_size=batch_size), tmp_path / name)
        results[name] = model
    accumulated, large, small = (
        results[k].weight.detach() for k in ("accumulated", "large", "small")
    )
    assert torch.allclose(accumulated, large, atol=1e-6)
    assert not torch.allclose(small, large, atol=1e-3)  # four separate steps would differ


def test_limit_batches_takes_a_count_or_a_fraction():
    assert limit_batches(50, 1.0) == 50
    assert limit_batches(50, 0.1) == 5
    assert limit_batches(50, 7) == 7
    assert limit_batches(50, 500) == 50
    with pytest.raises(
        UserError,
        match=r"^trainer.limit_val_batches must be a number of batches \(int >= 1\) or a "
        r"fraction in \(0, 1\], got 1.5; for example trainer.limit_val_batches=1.0.$",
    ):
        Trainer(limit_val_batches=1.5)


def test_bad_trainer_values_are_one_sentence_each():
    with pytest.raises(UserError) as error:
        Trainer(max_epochs="abc")
    assert (
        str(error.value)
        == "trainer.max_epochs must be a positive integer, got 'abc'; for example trainer.max_epochs=30."
    )
    with pytest.raises(UserError, match=r"trainer\.precision=16 needs a CUDA device"):
        Trainer(device="cpu", precision=16)
    with pytest.raises(UserError, match=r"trainer\.early_stopping\.monitor must be one of"):
        Trainer(early_stopping={"monitor": "val/f1"})


def test_bf16_autocast_trains_on_cpu(tmp_path):
    trainer = quiet_trainer(precision="bf16", max_epochs=3)
    assert trainer.autocast_dtype is torch.bfloat16
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3))
    result = fit(trainer, model, BlobData(), tmp_path)
    assert result["test/acc"] >= 0.85


def test_auto_precision_is_fp32_on_cpu_and_for_small_models_on_cuda():
    assert Trainer(device="cpu", precision="auto").autocast_dtype is None
    assert Trainer(device="cpu", precision=32).autocast_dtype is None
    # Under 5 M parameters a CUDA step is launch-bound: bf16's casts cost more than they save.
    small = nn.Linear(1000, 1000)
    assert resolve_precision("auto", torch.device("cuda"), small) is None
    assert resolve_precision("bf16", torch.device("cuda"), small) is torch.bfloat16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["auto", "16", "bf16"])
def test_mixed_precision_on_cuda_trains_and_clips(precision, tmp_path):
    trainer = Trainer(
        device="cuda", precision=precision, progress=False, max_epochs=3, grad_clip=1.0
    )
    if precision == "16":
        assert trainer.autocast_dtype is torch.float16
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3))
    result = fit(trainer, model, BlobData(), tmp_path)
    assert result["test/acc"] >= 0.85


def test_channels_last_auto_is_on_for_conv_models_on_cuda_and_cpu_and_trains(tmp_path):
    from nntrain.models.cnn import CNN
    from tests.helpers import ImageBlobData

    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    assert use_channels_last("auto", cpu, CNN((3, 8, 8), 2)) is True
    # On CUDA only for conv models of 5 M parameters or more (smaller ones are launch-bound).
    assert use_channels_last("auto", cuda, CNN((3, 8, 8), 2)) is False
    assert use_channels_last("auto", cuda, nn.Conv2d(512, 512, 5, device="meta")) is True
    assert use_channels_last("auto", mps, CNN((3, 8, 8), 2)) is False
    assert use_channels_last("auto", cuda, nn.Linear(2, 2)) is False
    assert use_channels_last("auto", cpu, nn.Linear(2, 2)) is False
    assert use_channels_last(True, cpu, nn.Linear(2, 2)) is True
    assert use_channels_last(False, cpu, CNN((3, 8, 8), 2)) is False
    model = CNN((3, 16, 16), 4, channels=[8, 8])
    trainer = quiet_trainer(channels_last=True, max_epochs=2)
    result = fit(trainer, model, ImageBlobData(shape=(3, 16, 16)), tmp_path)
    assert model.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert math.isfinite(result["test/loss"])
    with pytest.raises(UserError, match=r"^trainer\.channels_last must be auto, true or false"):
        Trainer(channels_last="yes")


def test_the_model_summary_lists_layers_with_output_shapes_and_parameters(tmp_path):
    from nntrain.models.cnn import CNN
    from nntrain.reporting.model_summary import model_summary

    model = CNN(input_shape=(3, 32, 32), num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary = model_summary(model, (3, 32, 32), torch.device("cpu"))
    lines = summary.splitlines()
    assert lines[0].split() == ["layer", "type", "output", "shape", "parameters"]
    first_conv = lines[2].split()
    assert first_conv[1] == "Conv2d" and first_conv[2] == "64x32x32"
    assert int(first_conv[3].replace(",", "")) == 3 * 64 * 3 * 3
    assert lines[-3].startswith("model: CNN, input 3x32x32 per sample")
    total = sum(p.numel() for p in model.parameters())
    assert lines[-2] == f"parameters: {total:,} ({total:,} trainable, 0 frozen)"
    # one pass on zeros in eval mode: no BatchNorm statistic moved, still in training mode
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training


def test_the_progress_line_fits_80_columns_with_the_runs_eta_and_a_validation_phase(monkeypatch):
    import io
    import time

    import rich
    from rich.console import Console

    from nntrain.reporting.console import TrainProgress

    console = Console(width=80, record=True, file=io.StringIO(), force_terminal=True)
    monkeypatch.setattr(rich, "_console", console)

    def line(progress: TrainProgress) -> str:
        live = progress._progress
        assert live is not None
        render = Console(width=80, record=True, file=io.StringIO())
        render.print(live.make_tasks_table(live.tasks))
        return render.export_text().strip()

    with TrainProgress(enabled=True) as progress:
        progress.start_epoch(epoch=11, max_epochs=300, total_batches=1563)
        time.sleep(0.01)
        progress.advance(781)
        progress.show(loss=0.1234, acc=0.9876, lr=1e-3, samples_per_sec=123456.0)
        shown = line(progress)
        assert len(shown) <= 80, shown
        assert shown.startswith("epoch 12/300") and "781/1563" in shown
        assert "loss 0.123 acc 0.988 123.5k/s" in shown
        # the whole run's ETA: 289 epochs left at this pace, not this epoch's
        eta = shown.rsplit("eta ", 1)[1].split(":")
        assert int(eta[0]) * 3600 + int(eta[1]) * 60 + int(eta[2]) >= 0.9 * 289 * 1563 * 0.01 / 781
        progress.validating()
        assert line(progress).startswith("validating 12/300")
        progress.start_epoch(epoch=12, max_epochs=300, total_batches=1563)
        assert "loss 0.123" in line(progress)  # the latest figures stay until the next log step
        # A step's advance reaches rich at most every 0.1 s; validating() shows them all.
        live = progress._progress
        assert live is not None
        updates = []
        update = live.update
        monkeypatch.setattr(live, "update", lambda *a, **k: (updates.append(k), update(*a, **k)))
        for _ in range(500):
            progress.advance(1)
        assert len(updates) <= 2, updates
        progress.validating()
        assert "500/1563" in line(progress)


def epoch_metrics(names: list[str], samples_per_sec: float = 1234.0) -> dict[str, float]:
    """An epoch's metrics as the trainer logs them (train/*, val/*, lr, speed, time)."""
    splits = [f"train/{n}" for n in names] + [f"val/{n}" for n in names]
    return {
        **{key: 0.5 for key in splits},
        "lr": 3e-4,
        "train/samples_per_sec": samples_per_sec,
        "epoch_time": 12.3,
    }


def test_epoch_lines_are_one_table_within_80_columns():
    from nntrain.reporting.console import EpochTable

    table = EpochTable()
    first = table.lines(0, 30, epoch_metrics(["loss", "acc"]), improved=True)
    assert first == [
        "epoch  train/loss  train/acc  val/loss  val/acc        lr  samples/s    time",
        " 1/30      0.5000     0.5000    0.5000   0.5000  3.00e-04      1,234   12.3s  *",
    ]
    # the header once; later rows line up under it
    assert table.lines(9, 30, epoch_metrics(["loss", "acc"]), improved=False) == [
        "10/30      0.5000     0.5000    0.5000   0.5000  3.00e-04      1,234   12.3s"
    ]
    # a regression's metrics (no train/rmse, mae, r2 columns) leave no room for samples/s
    regression = EpochTable().lines(0, 30, epoch_metrics(["loss", "rmse", "mae", "r2"]), True)
    assert regression[0].split() == [
        "epoch", "train/loss", "val/loss", "val/rmse", "val/mae", "val/r2", "lr", "time"
    ]  # fmt: skip
    many_epochs = EpochTable().lines(0, 1000, epoch_metrics(["loss", "acc"], 9e6), True)
    for lines in (regression, many_epochs):
        assert all(len(line) <= 80 for line in lines), lines


def test_a_batch_of_one_sample_through_batchnorm_is_one_sentence(tmp_path):
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(UserError) as error:
        fit(quiet_trainer(max_epochs=1), model, BlobData(n=40, batch_size=1), tmp_path)
    assert str(error.value) == (
        "a training batch gave a BatchNorm layer one value per channel, which has no batch "
        "statistics (data.batch_size=1, or one image shrunk to 1x1 pixels); use "
        "data.batch_size=2 or more."
    )
