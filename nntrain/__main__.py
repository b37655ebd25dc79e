"""`python -m nntrain` (and later `torchrun -m nntrain`) runs the training CLI."""

from nntrain.cli import main

if __name__ == "__main__":
    main()
