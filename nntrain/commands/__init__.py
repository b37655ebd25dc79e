"""The console scripts: nntrain (train.py), nntrain-eval (evaluate.py), nntrain-predict
(predict.py), nntrain-export (export.py), nntrain-lr-find (lr_find.py). Each composes its Hydra
config, builds what it needs and hands over; no training or inference logic lives here."""

import os
import signal
import sys

COMMANDS = ("nntrain", "nntrain-eval", "nntrain-predict", "nntrain-export", "nntrain-lr-find")


def _interrupted_while_starting(signum: int, frame: object) -> None:
    """Ctrl-C while Python imports the command (before run_app's own handling): one line and
    exit 130, not a traceback from inside an import."""
    sys.stderr.write("Error: interrupted by SIGINT.\n")
    sys.exit(128 + signum)


# Only in the console scripts themselves: a program importing nntrain keeps its own handler.
if os.path.basename(sys.argv[0]) in COMMANDS:
    signal.signal(signal.SIGINT, _interrupted_while_starting)
