"""Images/s of a few backbones on this machine's CPU, for the "Pick a backbone" page.

Each model is built as `nntrain model=timm model.name=NAME` (or model=torchvision) builds it,
with a 10-class head and random weights (speed does not depend on the weights), and fed a batch
of random images at the model's own pretrained input size. Two figures per model, each the best
of --repeats timed batches after one warm-up batch:
  predict  the forward pass in eval mode without gradients (nntrain-eval, nntrain-predict);
  train    forward, backward and an AdamW step in train mode (nntrain's training step, fp32).
Timed in CPU time on one thread (torch.set_num_threads(1), time.thread_time): images per second
of one core, which other processes on a shared machine do not change (wall-clock time on a busy
machine varied threefold between runs). With --wall, wall-clock time on --threads threads.

    python scripts/backbone_speed.py                     # the page's table (a few minutes)
    python scripts/backbone_speed.py --batch 8 --repeats 2 timm:test_vit torchvision:resnet18
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from nntrain.models.backbones import FineTuned
from nntrain.models.timm_backbone import TimmModel, pretrained_config
from nntrain.models.torchvision_backbone import TorchvisionModel, default_weights

MODELS = [
    "timm:mobilenetv3_small_100",
    "timm:efficientnet_b0",
    "timm:resnet50",
    "timm:convnext_tiny",
    "timm:vit_tiny_patch16_224",
    "timm:vit_small_patch16_224",
    "torchvision:mobilenet_v3_small",
    "torchvision:resnet18",
    "torchvision:efficientnet_b0",
]


def build(spec: str) -> tuple[FineTuned, int, str]:
    """The model, its pretrained input size and where its pretrained weights come from."""
    library, name = spec.split(":")
    if library == "timm":
        config = TimmModel.data_config({"name": name})
        size = config["image_size"]
        source = f"timm, {pretrained_config(name).get('hf_hub_id', '')}"
        return TimmModel((3, size, size), 10, name=name), size, source
    size = TorchvisionModel.data_config({"name": name})["image_size"]
    source = f"torchvision, {default_weights(name)}"
    return TorchvisionModel((3, size, size), 10, name=name), size, source


def best_rate(
    step: Callable[[], None], batch: int, repeats: int, clock: Callable[[], float]
) -> float:
    step()  # warm-up: first-call allocations and kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        step()
        best = min(best, clock() - start)
    return batch / best


def measure(
    model: FineTuned, size: int, batch: int, repeats: int, clock: Callable[[], float]
) -> tuple[float, float]:
    images = torch.randn(batch, 3, size, size)
    targets = torch.randint(0, 10, (batch,))

    def predict() -> None:
        with torch.no_grad():
            model(images)

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train() -> None:
        loss = torch.nn.functional.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.eval()
    predict_rate = best_rate(predict, batch, repeats, clock)
    model.train()
    return predict_rate, best_rate(train, batch, repeats, clock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", nargs="*", default=MODELS, help="library:name, e.g. timm:resnet50"
    )
    parser.add_argument("--batch", type=int, default=16, help="images per batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed batches per figure")
    parser.add_argument("--wall", action="store_true", help="wall-clock time instead")
    parser.add_argument("--threads", type=int, default=1, help="torch's CPU threads")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.wall else time.thread_time
    require_one_thread = not args.wall and args.threads != 1
    if require_one_thread:
        parser.error("CPU time counts this thread only: --threads above 1 needs --wall")
    timing = "wall-clock" if args.wall else "CPU time of one thread"
    print(f"{timing}, {args.threads} thread(s), batch {args.batch}, best of {args.repeats}")
    print("| model | parameters | input | predict images/s | train images/s | weights |")
    print("|---|---:|---:|---:|---:|---|")
    for spec in args.models:
        model, size, source = build(spec)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        predict, train = measure(model, size, args.batch, args.repeats, clock)
        print(
            f"| `model={spec.split(':')[0]} model.name={spec.split(':')[1]}` | {params:.1f} M | "
            f"{size} | {predict:.0f} | {train:.1f} | {source} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
