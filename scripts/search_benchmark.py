"""What pruning and the search without batches buy: the same Optuna search, several ways.

One search (the digits MLP, the default data and model; TPE seeded with
hydra.sweeper.sampler.seed=0; --trials trials of --epochs epochs, no early stopping) is run as
`nntrain -m hparams_search=optuna ...` (the console script of this Python) in these
configurations, each in its own hydra.sweep.dir:
  A  no pruner (hydra/sweeper/pruner=nop, the default), one trial at a time;
  B  hydra/sweeper/pruner=median (n_startup_trials=5, n_warmup_steps=1: a trial can stop from
     its first epoch on), one trial at a time;
  C  two trials at a time (hydra.sweeper.n_jobs=2, hydra/launcher=joblib hydra.launcher.n_jobs=2),
     trainer.max_epochs searched too (a choice of --epochs and 6 x --epochs: trials of unequal
     length, as when some train ten epochs and others sixty), with the same seed and settings
     in two flows:
       batched  NNTRAIN_SEARCH_BATCHES=1: new trials start only once all in flight have ended,
                as Hydra's own sweepers do;
       flow     the sweeper's own flow: a new trial starts the moment any ends;
     --repeats times each, in the order batched, flow, flow, batched, ... (a machine whose load
     drifts weighs on both alike), the k-th pair with sampler seed k-1: how much a barrier
     costs depends on the draw (two long or two short trials in one batch waste nothing, a long
     and a short one half a worker), and one draw of 24 trials varies widely, so the pairs
     cover several draws; the goal compares the sums of their wall times. TPE learns
     that the longer trials score better and, after its 10 random start-up trials, draws almost
     only those: the trials would grow alike. So C's TPE draws every trial as in its start-up
     (hydra.sweeper.sampler.n_startup_trials=--trials: at random, seeded, the same trials in
     both flows); --learned-lengths leaves TPE's default.
For each it prints the epochs trained (the sum of the trials' epochs_run, from each job's
metrics.json), the sweep's wall time (the nntrain process's), the study's best val/acc, its
pruned trials (state PRUNED in the study; checked against status.json) and how busy its workers
were (the trials' time over n_jobs x the time from the first trial's start to the last one's
end), as a table and as Markdown, and whether the goals of issue 29 are met: pruning (B against
A) trains at most 60 % of the epochs with its best value within 0.5 points; with unequal trials
the flow's wall time is at most 0.85x the batched one's. Beside that goal, C's trial times are
replayed in both flows on workers that do not slow each other (as with one device per job). It
also says when a trial was left in another state than COMPLETE or PRUNED, or when C's trials
never ran two at once.

Settings: every job trains on one thread (OMP_NUM_THREADS=1, what joblib gives each of its 2
workers on 2 cores), so an epoch costs alike everywhere and other processes on a shared machine
slow it less (two threads ran the search 3.5x slower here at a load average of 5). digits'
validation split is --val-fraction=0.3 (540 images, 0.19 points each) rather than nntrain's 0.1
(180 images: one image is 0.56 points, coarser than the goal's 0.5). The study is read from
<sweep dir>/optuna.db (the sweeper keeps it there when no storage is given); each
configuration's nntrain output goes to <out>/<name>.log.

    python scripts/search_benchmark.py                  # the docs' table (~12 min on 2 cores)
    python scripts/search_benchmark.py --quick          # a smoke check (6 trials of 3 epochs)
    python scripts/search_benchmark.py --only C --repeats 1 --out /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRUNING_EPOCH_SHARE = 0.60  # goal: B trains at most this share of A's epochs
BEST_VALUE_POINTS = 0.5  # goal: B's best val/acc within this many points of A's
FLOW_TIME_RATIO = 0.85  # goal: the flow's wall time at most this times the batched one's


@dataclass(frozen=True)
class Setup:
    """One configuration of the search: its overrides and environment."""

    name: str
    label: str
    overrides: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    jobs: int = 1  # trials in flight at once
    seed: int = 0  # the sampler's


@dataclass
class Result:
    """What one configuration's search did."""

    setup: Setup
    epochs: int
    wall_s: float
    best: float | None
    pruned: int
    states: dict[str, int]
    status_pruned: int  # trials whose status.json says "pruned"
    most_in_flight: int  # the most trials running at once (from the study's times)
    busy: float  # the trials' time over jobs x the time from the first start to the last end
    durations: list[float]  # each trial's seconds, by number
    load: tuple[float, float]  # the machine's 1-minute load average before and after


def setups(arguments: argparse.Namespace) -> list[Setup]:
    """A, B, then C's two flows --repeats times each in the order batched, flow, flow, batched
    (a load that drifts weighs on both alike), pair k with seed k-1; C's trials train epochs or
    6 x epochs."""
    epochs, repeats = arguments.epochs, arguments.repeats
    short, long = epochs, 6 * epochs
    fixed = [f"trainer.max_epochs={epochs}"]
    median = [
        *fixed,
        "hydra/sweeper/pruner=median",
        "hydra.sweeper.pruner.n_startup_trials=5",
        "hydra.sweeper.pruner.n_warmup_steps=1",
    ]
    parallel = [
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        f"trainer.max_epochs=choice({short},{long})",
    ]
    if not arguments.learned_lengths:  # TPE's start-up draws (seeded, at random) for all
        parallel.append(f"hydra.sweeper.sampler.n_startup_trials={arguments.trials}")
    chosen = [
        Setup("A", "A: no pruner, n_jobs=1", fixed),
        Setup("B", "B: pruner=median, n_jobs=1", median),
    ]
    flows = {"batched": "1", "flow": "0"}
    for index in range(repeats):
        order = ["batched", "flow"] if index % 2 == 0 else ["flow", "batched"]
        for flow in order:
            name = f"C_{flow}" + (f"_{index + 1}" if repeats > 1 else "")
            label = f"C: n_jobs=2, unequal, {flow}" + (f", seed {index}" if repeats > 1 else "")
            environment = {"NNTRAIN_SEARCH_BATCHES": flows[flow]}
            chosen.append(Setup(name, label, parallel, environment, jobs=2, seed=index))
    return chosen


def command(setup: Setup, sweep_dir: Path, arguments: argparse.Namespace) -> list[str]:
    """The nntrain command line of one configuration."""
    nntrain = Path(sys.executable).with_name("nntrain")
    return [
        str(nntrain),
        "-m",
        "hparams_search=optuna",
        f"hydra.sweeper.n_trials={arguments.trials}",
        f"hydra.sweeper.sampler.seed={setup.seed}",
        f"data.val_fraction={arguments.val_fraction}",
        "trainer.early_stopping.patience=null",
        "trainer.report_images=false",
        f"hydra.sweep.dir={sweep_dir}",
        *setup.overrides,
    ]


def run_setup(setup: Setup, out: Path, arguments: argparse.Namespace) -> Result:
    """Run one configuration's search (its output in <out>/<name>.log) and read its results."""
    sweep_dir = out / setup.name
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise SystemExit(f"{sweep_dir} is not empty: the search would continue its study")
    log_path = out / f"{setup.name}.log"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **setup.environment}
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with log_path.open("w") as log:
        done = subprocess.run(
            command(setup, sweep_dir, arguments),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            check=False,
        )
    wall_s = time.perf_counter() - started
    if done.returncode != 0:
        tail = log_path.read_text().splitlines()[-15:]
        raise SystemExit(f"{setup.label} failed ({done.returncode}):\n" + "\n".join(tail))
    return read_result(setup, sweep_dir, wall_s, (load_before, os.getloadavg()[0]))


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def read_result(setup: Setup, sweep_dir: Path, wall_s: float, load: tuple[float, float]) -> Result:
    """Epochs from each trial's metrics.json, statuses from status.json, the rest from the
    study in <sweep dir>/optuna.db."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="nntrain", storage=f"sqlite:///{sweep_dir}/optuna.db")
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    epochs = status_pruned = 0
    for trial in trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
        job_dir = Path(trial.user_attrs.get("job_dir", sweep_dir / str(trial.number)))
        epochs += int(read_json(job_dir / "metrics.json").get("epochs_run", 0))
        status_pruned += read_json(job_dir / "status.json").get("status") == "pruned"
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    best = study.best_value if any(t.state.name == "COMPLETE" for t in trials) else None
    return Result(
        setup=setup,
        epochs=epochs,
        wall_s=wall_s,
        best=best,
        pruned=states.get("PRUNED", 0),
        states=states,
        status_pruned=status_pruned,
        most_in_flight=most_in_flight(finished),
        busy=busy_share(finished, setup.jobs),
        durations=[seconds(t) for t in sorted(finished, key=lambda t: t.number)],
        load=load,
    )


def most_in_flight(trials: list[Any]) -> int:
    """The most trials running at one moment, from their start and end times."""
    events = []
    for trial in trials:
        if trial.datetime_start and trial.datetime_complete:
            events += [(trial.datetime_start, 1), (trial.datetime_complete, -1)]
    running = most = 0
    for _, change in sorted(events, key=lambda event: (event[0], event[1])):
        running += change
        most = max(most, running)
    return most


def seconds(trial: Any) -> float:
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def replayed(durations: list[float], jobs: int) -> tuple[float, float]:
    """The time these trials (in this order) take on `jobs` workers that do not slow each
    other, in batches and in the flow."""
    batched = sum(max(durations[i : i + jobs]) for i in range(0, len(durations), jobs))
    workers = [0.0] * jobs
    for duration in durations:
        workers[workers.index(min(workers))] += duration
    return batched, max(workers)


def busy_share(trials: list[Any], jobs: int) -> float:
    """How much of the search's time its `jobs` workers spent in trials."""
    timed = [t for t in trials if t.datetime_start and t.datetime_complete]
    if not timed:
        return 0.0
    span = max(t.datetime_complete for t in timed) - min(t.datetime_start for t in timed)
    used = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in timed)
    return used / (jobs * max(span.total_seconds(), 1e-9))


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def table_rows(results: list[Result]) -> list[list[str]]:
    """Header and one row per configuration."""
    header = ["configuration", "epochs trained", "wall time (s)", "best val/acc (%)", "pruned"]
    rows = [[*header, "workers busy (%)"]]
    for result in results:
        rows.append(
            [
                result.setup.label,
                str(result.epochs),
                f"{result.wall_s:.0f}",
                percent(result.best),
                f"{result.pruned} of {sum(result.states.values())}",
                f"{100 * result.busy:.0f}",
            ]
        )
    return rows


def print_tables(results: list[Result]) -> None:
    """The table aligned for the terminal, then as Markdown for the docs."""
    rows = table_rows(results)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    print("\nMarkdown:\n")
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "|".join([" --- "] + [" ---: "] * (len(rows[0]) - 1)) + "|")
    for row in rows[1:]:
        print("| " + " | ".join(row) + " |")


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def goal_lines(results: list[Result]) -> list[str]:
    """Whether each goal is met (those whose configurations ran); C's wall times are the sums
    over its repeats."""
    lines = []
    by_name = {result.setup.name: result for result in results}
    a, b = by_name.get("A"), by_name.get("B")
    if a and b and a.epochs and a.best is not None and b.best is not None:
        share = b.epochs / a.epochs
        gap = 100 * (a.best - b.best)
        ok = share <= PRUNING_EPOCH_SHARE and gap <= BEST_VALUE_POINTS
        lines.append(
            f"pruning (B vs A): {100 * share:.0f} % of the epochs (goal <= "
            f"{100 * PRUNING_EPOCH_SHARE:.0f} %), best value {gap:+.2f} points below A's (goal "
            f"<= {BEST_VALUE_POINTS}): {met(ok)}"
        )
    batched = [r.wall_s for r in results if r.setup.name.startswith("C_batched")]
    flow = [r.wall_s for r in results if r.setup.name.startswith("C_flow")]
    if batched and flow:
        ratio = sum(flow) / sum(batched)
        lines.append(
            f"no batches (C): flow {sum(flow):.0f} s / batched {sum(batched):.0f} s = "
            f"{ratio:.2f}x (goal <= {FLOW_TIME_RATIO}x): {met(ratio <= FLOW_TIME_RATIO)}"
        )
        spans = [replayed(r.durations, r.setup.jobs) for r in results if r.setup.jobs > 1]
        alone, together = sum(span[0] for span in spans), sum(span[1] for span in spans)
        lines.append(
            f"  the trials' times of all {len(spans)} C runs replayed in both flows on workers "
            f"that do not slow each other (one device per job): flow {together:.0f} s / batched "
            f"{alone:.0f} s = {together / alone:.2f}x"
        )
    return lines


def check_lines(results: list[Result]) -> list[str]:
    """What would point at a sweeper's bug: trials left RUNNING or failed, pruned trials whose
    status.json disagrees, parallel runs that never overlapped."""
    lines = []
    for result in results:
        label = result.setup.label
        left = {s: n for s, n in result.states.items() if s not in ("COMPLETE", "PRUNED")}
        if left:
            lines.append(f"{label}: trials in other states: {left}")
        if result.status_pruned != result.pruned:
            lines.append(
                f"{label}: {result.pruned} PRUNED in the study but "
                f"{result.status_pruned} status.json 'pruned'"
            )
        if result.setup.jobs > 1 and result.most_in_flight < result.setup.jobs:
            lines.append(f"{label}: never {result.setup.jobs} trials at once")
    return lines or ["checks: every trial COMPLETE or PRUNED, status.json agrees, jobs overlap"]


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=None, help="trials per search (24)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (10)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="runs of each C flow, each pair its own seed (5)"
    )
    parser.add_argument("--quick", action="store_true", help="6 trials of 3 epochs, C once")
    parser.add_argument(
        "--learned-lengths",
        action="store_true",
        help="C: TPE's model draws the trials after its 10 start-up ones (they converge on "
        "the longer trials) instead of every trial drawn at random (seeded)",
    )
    parser.add_argument(
        "--val-fraction", type=float, default=0.3, help="digits' validation split (0.3)"
    )
    parser.add_argument("--out", type=Path, default=None, help="keep the sweeps here")
    parser.add_argument("--only", default=None, help="name prefixes: A,B or C_batched,C_flow")
    arguments = parser.parse_args()
    arguments.trials = arguments.trials or (6 if arguments.quick else 24)
    arguments.epochs = arguments.epochs or (3 if arguments.quick else 10)
    arguments.repeats = arguments.repeats or (1 if arguments.quick else 5)
    return arguments


def chosen_setups(arguments: argparse.Namespace) -> list[Setup]:
    chosen = setups(arguments)
    if arguments.only:
        prefixes = tuple(arguments.only.split(","))
        chosen = [setup for setup in chosen if setup.name.startswith(prefixes)]
    return chosen


def progress_line(result: Result) -> str:
    before, after = result.load
    return (
        f"  {result.setup.label}: {result.wall_s:.0f} s, {result.states}, at most "
        f"{result.most_in_flight} in flight, load average {before:.1f} -> {after:.1f}"
    )


def main() -> None:
    arguments = parse_arguments()
    chosen = chosen_setups(arguments)
    with tempfile.TemporaryDirectory(prefix="search_benchmark_") as scratch:
        out = (arguments.out or Path(scratch)).resolve()
        out.mkdir(parents=True, exist_ok=True)
        print(
            f"{arguments.trials} trials of {arguments.epochs} epochs (digits, val_fraction "
            f"{arguments.val_fraction}, MLP, TPE seed 0, C's k-th pair seed k-1; C's lengths "
            f"{'learnt by TPE' if arguments.learned_lengths else 'drawn at random'}) on "
            f"{platform.machine()}, {os.cpu_count()} CPUs, one thread a job; output in {out}"
        )
        results = []
        for setup in chosen:
            results.append(run_setup(setup, out, arguments))
            print(progress_line(results[-1]), flush=True)
        print()
        print_tables(results)
        print()
        for line in goal_lines(results) + check_lines(results):
            print(line)


if __name__ == "__main__":
    main()
