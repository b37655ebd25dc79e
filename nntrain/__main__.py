"""`python -m nntrain` (and later `torchrun -m nntrain`) runs the training CLI."""

from nntrain.commands.train import main

if __name__ == "__main__":
    main()
