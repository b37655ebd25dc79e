"""The model at a glance, as Lightning and Keras print it: each layer with its output shape and
parameters, then the totals and the size in memory. Written to the run directory as
model_summary.txt (the terminal shows one line: the layers are there for whoever wants them)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def model_summary(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> str:
    """The table as text. Output shapes come from one forward pass of two all-zero inputs in
    eval mode without gradients (no random numbers are drawn, no statistics change); a model
    that cannot run on zeros gets the table without shapes, and a note."""
    shapes: dict[str, str] = {}
    leaves = [(n, m) for n, m in model.named_modules() if n and next(m.children(), None) is None]

    def recorder(name: str) -> Any:
        def record(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                shapes[name] = "x".join(str(size) for size in output.shape[1:]) or "scalar"

        return record

    hooks = [module.register_forward_hook(recorder(name)) for name, module in leaves]
    note = ""
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((2, *input_shape), device=device))
    except Exception as error:  # the summary must never stop a run
        note = f"(output shapes unknown: a forward pass on zeros failed: {error})"
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return format_table(model, leaves, shapes, input_shape, note)


def format_table(
    model: nn.Module,
    leaves: list[tuple[str, nn.Module]],
    shapes: dict[str, str],
    input_shape: tuple[int, ...],
    note: str,
) -> str:
    rows = [("layer", "type", "output shape", "parameters")]
    for name, module in leaves:
        own = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append((name, type(module).__name__, shapes.get(name, "-"), f"{own:,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(
            cell.ljust(w) if i < 3 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    size = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    lines += [
        "",
        f"model: {type(model).__name__}, input {'x'.join(map(str, input_shape))} per sample",
        f"parameters: {total:,} ({trainable:,} trainable, {total - trainable:,} frozen)",
        f"size: {size / 2**20:.2f} MiB (parameters and buffers)",
    ]
    if note:
        lines.append(note)
    return "\n".join(lines) + "\n"
