#!/usr/bin/env bash
# Issue 13's GPU checks, for a session lent a GPU (the CPU cannot measure them). Run from the
# project root after ../shared/device/gpu-check.sh's "setup" section (a venv with the wheels, fake
# CIFAR files in /tmp/data, /tmp/site/sitecustomize.py, NNTRAIN_DATA_DIR=/tmp/data), e.g. by
# appending these steps to a copy of gpu-check.sh in .gpu/. About 6-8 minutes on an H200.
# Output under $OUT (default /tmp/out). Accuracy on fake (random-label) CIFAR means nothing:
# the speedrun's accuracy needs the real CIFAR-10 files.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NNTRAIN_DATA_DIR=${NNTRAIN_DATA_DIR:-/tmp/data}
section() { printf '\n=== %s (%s)\n' "$*" "$(date +%T)"; }

section "op count (CPU, deterministic): Trainer vs careful hand loop"
timeout 120 python scripts/count_ops.py 2>&1 | grep -E "ops per|/ hand"

section "benchmark on CUDA: (a), (a) captured, the better hand loop; 2 s windows, 2 rounds"
# The captured column compiles once per process (inductor cache warm after round 1).
timeout 420 python scripts/benchmark.py --device cuda --no-startup --no-classic --rounds 2 \
  --json "$OUT/bench_cuda_issue13.json" 2>&1 | tail -14

section "speedrun: cold then warm compile cache (CUDA events, compile apart, wall, test acc)"
PYTHONPATH=/tmp/site timeout 300 python scripts/benchmark.py --speedrun \
  --speedrun-args data.download=false --json "$OUT/speedrun_issue13.json" 2>&1 | tail -4

section "speedrun with the captured step (trainer.cuda_graphs=true instead of compile)"
(cd /tmp && PYTHONPATH=/tmp/site timeout 200 nntrain experiment=cifar10_speedrun \
  data.download=false trainer.compile=false trainer.cuda_graphs=true hydra.run.dir=/tmp/sr_cg \
  2>&1 | grep -v "│" | tail -16)

section "CUDA tests of issue 13 (captured == eager, resume across; auto rules; compile cache)"
timeout 300 python -m pytest -q -x -p no:cacheprovider -p no:logging \
  tests/test_captured_step.py tests/test_op_count.py \
  "tests/test_trainer.py::test_mixed_precision_on_cuda_trains_and_clips" \
  "tests/test_speedrun.py::test_compiled_training_saves_plain_weights_that_load_anywhere" 2>&1 | tail -15

section "graphs per captured step (expect 1-3: dynamo graph breaks at backward / fused optimizer)"
timeout 200 python - <<'PY' 2>&1 | tail -5
import torch, functools
from torch import nn
from torch._dynamo.utils import counters
from nntrain.training.trainer import Trainer
from nntrain.optim.schedules import constant
from tests.helpers import BlobData
torch.manual_seed(0)
m = nn.Sequential(nn.Linear(4, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 3))
t = Trainer(device="cuda", max_epochs=2, progress=False, cuda_graphs=True, report_images=False)
r = t.fit(m, BlobData(n=4000, batch_size=128), functools.partial(torch.optim.AdamW, lr=1e-3),
          functools.partial(constant), "/tmp/cg_graphs")
print("captured:", type(t._step).__name__, "compile_seconds", round(t.compile_seconds, 1),
      "eager steps", getattr(t._step, "eager_steps", None), "test/acc", r["test/acc"])
print("dynamo:", dict(counters["stats"]), "graph breaks:", sum(counters["graph_break"].values()))
print("cudagraph:", {k: v for k, v in counters["inductor"].items() if "cudagraph" in k})
PY
