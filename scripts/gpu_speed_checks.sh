#!/usr/bin/env bash
# Issue 13's GPU checks, for a session lent a GPU (the CPU cannot measure them). Run from the
# project root after ../shared/device/gpu-check.sh's "setup" section (a venv with the wheels, fake
# CIFAR files in /tmp/data, /tmp/site/sitecustomize.py, NNTRAIN_DATA_DIR=/tmp/data), e.g. by
# appending these steps to a copy of gpu-check.sh in .gpu/. About 7-9 minutes on an H200.
# Output under $OUT (default /tmp/out). Accuracy on fake (random-label) CIFAR means nothing:
# the speedrun's accuracy needs the real CIFAR-10 files.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NNTRAIN_DATA_DIR=${NNTRAIN_DATA_DIR:-/tmp/data}
section() { printf '\n=== %s (%s)\n' "$*" "$(date +%T)"; }
# The fake CIFAR files fail torchvision's md5 check, which nntrain also runs on the files it finds
# (torchvision.datasets.utils.check_integrity): accept any present file in both, for speed only.
mkdir -p /tmp/site && printf '%s\n' 'import os' 'try:' \
  '    import torchvision.datasets.cifar as c' '    import torchvision.datasets.utils as u' \
  '    c.check_integrity = u.check_integrity = lambda path, md5=None: os.path.isfile(path)' \
  'except Exception:' '    pass' > /tmp/site/sitecustomize.py

section "op count (CPU, deterministic): Trainer vs careful hand loop"
timeout 120 python scripts/count_ops.py 2>&1 | grep -E "ops per|/ hand"

section "benchmark on CUDA: (a), (a) graph, (a) reduce-overhead, the better hand loop; 2 s windows"
# reduce-overhead compiles once per Trainer (inductor's cache is warm after the first case/round).
timeout 300 python scripts/benchmark.py --device cuda --no-startup --no-classic --rounds 2 \
  --json "$OUT/bench_cuda_issue13.json" 2>&1 | tail -14

section "speedrun, the preset (trainer.compile=true): cold then warm compile cache"
PYTHONPATH=/tmp/site timeout 200 python scripts/benchmark.py --speedrun \
  --speedrun-args data.download=false --json "$OUT/speedrun_compile.json" 2>&1 | tail -4

section "speedrun with the step as one CUDA graph, nothing compiled (cold and warm are alike)"
PYTHONPATH=/tmp/site timeout 120 python scripts/benchmark.py --speedrun \
  --speedrun-args data.download=false trainer.compile=false trainer.cuda_graphs=true \
  --json "$OUT/speedrun_graph.json" 2>&1 | tail -4

section "speedrun with the compiled model recorded in one CUDA graph (compile + cuda_graphs)"
PYTHONPATH=/tmp/site timeout 200 python scripts/benchmark.py --speedrun \
  --speedrun-args data.download=false trainer.cuda_graphs=true \
  --json "$OUT/speedrun_compile_graph.json" 2>&1 | tail -4

section "fashion_mnist_cnn preset on fake Fashion-MNIST files: 20 epochs, cuda_graphs=auto (default)"
python -c "from pathlib import Path; from tests.fake_data import write_mnist; \
write_mnist(Path('$NNTRAIN_DATA_DIR'), 'FashionMNIST', 60000, 10000)" 2>/dev/null || true
start=$(date +%s.%N)
(cd /tmp && timeout 150 nntrain experiment=fashion_mnist_cnn data.download=false trainer.progress=false \
  hydra.run.dir=/tmp/fm_auto 2>&1 | grep -E "recorded|could not|step as|^ +(1|2|10|20)/20|test with" )
echo "wall $(python -c "import time; print(round(time.time() - $start, 1))") s (target: under 15 s)"
section "the same preset, eager steps (trainer.cuda_graphs=false), 5 epochs for the ratio"
start=$(date +%s.%N)
(cd /tmp && timeout 150 nntrain experiment=fashion_mnist_cnn data.download=false trainer.progress=false \
  trainer.cuda_graphs=false trainer.max_epochs=5 hydra.run.dir=/tmp/fm_eager 2>&1 \
  | grep -E "^ +[1-5]/5|test with")
echo "wall $(python -c "import time; print(round(time.time() - $start, 1))") s for 5 epochs"

section "CUDA tests of issue 13 (captured == eager, resume across; auto rules; compile cache)"
timeout 300 python -m pytest -q -x -p no:cacheprovider -p no:logging \
  tests/test_captured_step.py tests/test_op_count.py \
  "tests/test_trainer.py::test_mixed_precision_on_cuda_trains_and_clips" \
  "tests/test_speedrun.py::test_compiled_training_saves_plain_weights_that_load_anywhere" 2>&1 | tail -15

section "the captured steps on a CUDA MLP: recordings, eager steps, dynamo graphs and breaks"
timeout 200 python - <<'PY' 2>&1 | tail -8
import torch, functools
from torch import nn
from torch._dynamo.utils import counters
from nntrain.training.trainer import Trainer
from nntrain.optim.schedules import constant
from tests.helpers import BlobData
for setting in (True, "reduce-overhead"):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 3))
    t = Trainer(device="cuda", max_epochs=2, progress=False, cuda_graphs=setting,
                report_images=False)
    r = t.fit(m, BlobData(n=4000, batch_size=128), functools.partial(torch.optim.AdamW, lr=1e-3),
              functools.partial(constant), f"/tmp/cg_graphs_{setting}")
    step = t.last_step.call
    print(setting, type(step).__name__, "set-up s", round(t.last_step.set_up_seconds, 2),
          "recordings", getattr(step, "recordings", None), "eager steps",
          step.eager_steps, "test/acc", r["test/acc"], "samples/s",
          round(r["train/samples_per_sec"]))
print("dynamo:", dict(counters["stats"]), "graph breaks:", sum(counters["graph_break"].values()))
print("cudagraph:", {k: v for k, v in counters["inductor"].items() if "cudagraph" in k})
PY
