"""The console scripts' entry points ([project.scripts] in pyproject.toml): nntrain,
nntrain-eval, nntrain-predict, nntrain-export and nntrain-lr-find.

Ctrl-C may come at any moment, also while Python still imports torch and Hydra (a second or more
on a loaded machine). From the first line of nntrain that a console script runs (importing this
module) it ends the command with one line, `Error: interrupted by SIGINT.`, and exit status 130,
never with a traceback from inside an import. So this module imports nothing but os, signal and
sys (a millisecond), installs that handler, and only then imports the command, which brings torch
and Hydra; the command's run_app (nntrain.commands.common) takes SIGINT over once its work begins
(a graceful stop of training, a sweep's summary, ...).
"""

import os
import signal
import sys

SCRIPTS = ("nntrain", "nntrain-eval", "nntrain-predict", "nntrain-export", "nntrain-lr-find")


def interrupted_while_starting(signum: int, frame: object) -> None:
    """Ctrl-C before the command has begun its work: one line and exit 130, at once.

    os._exit, not sys.exit: a SystemExit raised in the middle of some library's import can be
    swallowed there (a bare `except:`) or leave half-imported modules whose clean-up at exit
    prints; nothing has been written yet that would need flushing or removing."""
    try:
        os.write(2, b"Error: interrupted by SIGINT.\n")  # stderr, unbuffered
    except OSError:  # stderr closed (its reader gone): exit all the same
        pass
    finally:
        os._exit(128 + signum)


def handle_ctrl_c_while_starting() -> None:
    signal.signal(signal.SIGINT, interrupted_while_starting)


# At import, in a console script only (its file is sys.argv[0]): the script imports this module
# before it calls the entry point, and a program that imports nntrain keeps its own handler.
if os.path.basename(sys.argv[0]) in SCRIPTS:
    handle_ctrl_c_while_starting()


def run(command: str) -> None:
    """Import nntrain.commands.<command> under the handler and run its main()."""
    handle_ctrl_c_while_starting()
    main = __import__(f"nntrain.commands.{command}", fromlist=["main"]).main
    try:
        main()
    except SystemExit as ending:
        exit_at_once_on_ctrl_c(exit_status(ending.code))
        raise
    except BaseException:
        exit_at_once_on_ctrl_c(1)
        raise
    exit_at_once_on_ctrl_c(0)


def exit_status(code: object) -> int:
    """The status Python exits with for sys.exit(code)."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def exit_at_once_on_ctrl_c(status: int) -> None:
    """The command has ended and its exit status is decided; what is left is Python's shutdown
    (atexit: TensorBoard's writer, torch's caches), whose clean-up a KeyboardInterrupt would
    break with a traceback ("Exception ignored in atexit callback"). Ctrl-C now ends the process
    at once, with that status: everything the command writes is written."""
    import contextlib  # loaded by now (the command imported far more)

    def exit_now(signum: int, frame: object) -> None:
        for stream in (sys.stdout, sys.stderr):
            # Closed, or interrupted in its own write: nothing more to do.
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(status)

    signal.signal(signal.SIGINT, exit_now)


def train() -> None:
    """`nntrain`"""
    run("train")


def evaluate() -> None:
    """`nntrain-eval`"""
    run("evaluate")


def predict() -> None:
    """`nntrain-predict`"""
    run("predict")


def export() -> None:
    """`nntrain-export`"""
    run("export")


def lr_find() -> None:
    """`nntrain-lr-find`"""
    run("lr_find")
