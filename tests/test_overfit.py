"""trainer.overfit_batches: train and validate on the same few training batches."""

from __future__ import annotations

import pytest
import torch

from nntrain.checkpoint import load_checkpoint
from nntrain.commands.train import run
from nntrain.data.digits import Digits
from nntrain.devices import Compute
from nntrain.errors import UserError
from nntrain.inference.logits import score
from nntrain.models.mlp import MLP
from nntrain.training.overfit import FixedBatches, overfit_loader
from nntrain.training.trainer import Trainer
from tests.conftest import compose_config, run_nntrain


def test_the_overfit_batches_are_the_first_training_batches_in_order_unaugmented():
    data = Digits(batch_size=64)
    data.setup(torch.device("cpu"))
    loader = overfit_loader(data, 2)
    assert len(loader) == 2
    inputs = torch.cat([x for x, _ in loader])
    targets = torch.cat([y for _, y in loader])
    train = data.splits["train"]
    assert torch.equal(inputs, data.transform(train.inputs[:128]))
    assert torch.equal(targets, train.targets[:128])
    loader.set_epoch(5)  # every epoch the same batches
    assert torch.equal(torch.cat([x for x, _ in loader]), inputs)


def test_digits_mlp_fits_two_batches_and_validates_on_exactly_them(tmp_path):
    cfg = compose_config(
        "trainer.overfit_batches=2",
        "trainer.max_epochs=15",
        "scheduler=constant",
        "optimizer.lr=3e-3",
        "trainer.device=cpu",
        "trainer.progress=false",
        "trainer.report_images=false",
    )
    result = run(cfg, str(tmp_path))
    assert result["val/acc"] == 1.0
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["metrics"]["train/loss"] < 0.2
    # The validation figures are those of the two training batches: best.pt scored on them
    # gives exactly the run's val/loss.
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    model = MLP(input_shape=(1, 8, 8), num_classes=10, hidden=[512, 256, 128], dropout=0.3)
    model.load_state_dict(best["model"])
    data = Digits(batch_size=64)
    data.setup(torch.device("cpu"))
    batches = FixedBatches(overfit_loader(data, 2).batches)
    compute = Compute.resolve(torch.device("cpu"), "auto", "auto", model)
    scores = score(model, batches, compute)
    assert scores.acc == 1.0
    assert scores.loss == pytest.approx(result["val/loss"], rel=1e-6)


@pytest.mark.parametrize("value", [-1, 1.5, "two", True])
def test_bad_overfit_batches_are_refused(value):
    with pytest.raises(UserError, match=r"^trainer.overfit_batches must be a number of batches"):
        Trainer(device="cpu", overfit_batches=value)


def test_off_values():
    assert Trainer(device="cpu", overfit_batches=None).overfit_batches == 0
    assert Trainer(device="cpu", overfit_batches=0).overfit_batches == 0


def test_cli_refuses_a_negative_overfit_batches_in_one_sentence(tmp_path):
    done = run_nntrain("trainer=debug", "trainer.overfit_batches=-1", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: trainer.overfit_batches must be a number of batches >= 1 (or 0 / null: off), "
        "got -1; for example trainer.overfit_batches=2."
    )
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.pt"))


class FewBatches:
    """A loader of fixed batches (the Loader protocol's iteration and set_epoch)."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)

    def set_epoch(self, epoch, start_batch=0):
        pass


class Prices:
    """Regression data (task = regression): float targets, one output."""

    task = "regression"

    def ordered_train_loader(self):
        return FewBatches([(torch.randn(4, 3), torch.randn(4)) for _ in range(3)])


@pytest.mark.parametrize(
    "data,promise",
    [
        (Prices(), "success is a training loss near 0 on them (val/rmse and val/mae near 0, "
         "val/r2 near 1)"),
        (Digits(batch_size=64), "success is a training loss near 0 and 100 % accuracy on them"),
    ],
    ids=["regression", "classification"],
)  # fmt: skip
def test_the_overfit_line_promises_what_the_task_can_reach(data, promise, caplog):
    # A regression has no accuracy: "100 % accuracy" told its user to look for a figure that
    # is never shown.
    if isinstance(data, Digits):
        data.setup(torch.device("cpu"))
    with caplog.at_level("INFO", logger="nntrain"):
        overfit_loader(data, 2)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("overfit")]
    assert line.endswith(promise), line
    assert ("accuracy" in line) == isinstance(data, Digits)
