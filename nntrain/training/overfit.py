"""trainer.overfit_batches=N: train and validate on the same N training batches.

The standard sanity check that a model, its loss and the optimizer can fit at all: on a few
fixed batches the training loss should fall towards 0 (and a classifier's accuracy reach 100 %;
a regression has none, its errors fall towards 0 and its R² rises towards 1). The batches
are the first N of the training split in its stored order and without augmentation (the data's
`ordered_train_loader`), captured once and replayed every epoch, for training and validation
alike, so the validation figures are figures on exactly the batches the model trains on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from nntrain.data.protocols import Batch, DataModule, Loader, task_of

log = logging.getLogger("nntrain")


class FixedBatches:
    """The same batches every epoch, in the same order (a Loader)."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches
        self.start_batch = 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches[self.start_batch :])

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.start_batch = start_batch  # a resumed epoch skips the batches it has done

    def shard(self, rank: int, world: int) -> None:
        """Under torchrun every rank fits the same batches: the averaged gradient is theirs."""


def overfit_loader(data: DataModule, count: int) -> FixedBatches:
    """The first `count` training batches, in order and unaugmented when the data can give
    them so (data without `ordered_train_loader` gives its epoch-0 training batches)."""
    ordered = getattr(data, "ordered_train_loader", None)
    loader: Loader = ordered() if ordered is not None else data.train_loader()
    if ordered is None:
        log.warning(
            f"{type(data).__name__} has no ordered_train_loader: trainer.overfit_batches uses "
            "its first training batches of epoch 0 as they come (shuffled, maybe augmented)"
        )
    loader.set_epoch(0)
    batches: list[Batch] = []
    for batch in loader:
        if len(batches) == count:
            break
        batches.append(batch)
    samples = sum(len(targets) for _, targets in batches)
    if len(batches) < count:
        log.warning(f"the training split has only {len(batches)} batches (overfit_batches={count})")
    log.info(
        f"overfit_batches={count}: training and validating on the same {len(batches)} training "
        f"batch{'' if len(batches) == 1 else 'es'} ({samples} samples), in order, without "
        f"augmentation (no MixUp/CutMix either); success is {task_of(data).overfit_success}"
    )
    return FixedBatches(batches)
