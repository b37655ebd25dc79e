"""The training loop (trainer.py: Trainer.fit in phases, step.py: one optimizer step) and what
a run carries along: its state and checkpoints, early stopping, lookahead, signals, seeds and
data-parallel ranks."""
