"""`python -m nntrain` (and `torchrun -m nntrain`) runs the training CLI, started as the
console script is (nntrain.commands.entry: Ctrl-C handled from the first line)."""

from nntrain.commands.entry import train

if __name__ == "__main__":
    train()
