"""scripts/benchmark.py runs end to end and writes its documented JSON (no timing asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
MODES = {"a_trainer", "b_hand_loop", "c_classic_w0", "c_classic_w2"}


def test_quick_benchmark_writes_the_documented_json(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(a)/(b)" in done.stdout and "first optimizer step" in done.stdout
    assert "figures: import matplotlib" in done.stdout
    report = json.loads(out.read_text())
    assert set(report) == {
        "machine", "device", "torch", "date", "rounds", "cases", "startup", "figures",
    }  # fmt: skip
    assert report["device"] == "cpu" and report["rounds"] == 1
    # ResNet-18 is a CUDA-only case: on a CPU the two others run.
    assert set(report["cases"]) == {"mlp_mnist", "cnn_cifar"}
    for case in report["cases"].values():
        assert set(case) == {"samples_per_sec", "overhead_ratio", "vs_classic_ratio", "step_ms"}
        speeds = case["samples_per_sec"]
        assert set(speeds) == MODES and set(case["step_ms"]) == MODES
        for stats in speeds.values():
            assert set(stats) == {"median", "min", "max"}
            assert 0 < stats["min"] <= stats["median"] <= stats["max"]
        a = speeds["a_trainer"]["median"]
        assert case["overhead_ratio"] == pytest.approx(a / speeds["b_hand_loop"]["median"])
        classic = max(speeds["c_classic_w0"]["median"], speeds["c_classic_w2"]["median"])
        assert case["vs_classic_ratio"] == pytest.approx(a / classic)
    startup = report["startup"]
    seconds = startup["seconds"]
    assert set(seconds) == {"import_torch_torchvision", "first_step", "one_step_run", "help"}
    assert all(value > 0 for value in seconds.values())
    # the first step comes before the run's validation, test, checkpoints and figures
    assert seconds["first_step"] < seconds["one_step_run"]
    baseline = seconds["import_torch_torchvision"]
    assert startup["first_step_ratio"] == pytest.approx(seconds["first_step"] / baseline)
    assert startup["one_step_ratio"] == pytest.approx(seconds["one_step_run"] / baseline)
    assert startup["help_ratio"] == pytest.approx(seconds["help"] / baseline)
    drawn = report["figures"]
    assert set(drawn["per_figure_ms"]) == {
        "curves", "confusion_matrix_10", "samples", "confusion_matrix_2", "roc_curve", "pr_curve",
        "decision_boundary",
    }  # fmt: skip
    assert all(ms > 0 for ms in drawn["per_figure_ms"].values())
    assert drawn["import_matplotlib_s"] > 0 and drawn["import_sklearn_metrics_s"] >= 0
    ms = drawn["per_figure_ms"]
    assert drawn["ten_class_image_run_s"] == pytest.approx(
        (ms["curves"] + ms["confusion_matrix_10"] + ms["samples"]) / 1000
    )
