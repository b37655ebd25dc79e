#!/usr/bin/env bash
# Installs nntrain with a plain `pip install .` into a fresh virtual environment and runs the
# default job from a directory outside the source tree, as a new user would.
# Use: bash scripts/check_install.sh [pip install options, e.g. -c .ci/constraints.txt]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$@" "$repo" 2>&1 | grep -v "is ignored: it is neither" || true
cd "$work"
start=$(date +%s.%N)
"$work/venv/bin/nntrain"
end=$(date +%s.%N)
printf '\nnntrain (defaults) took %.1f s from %s\n' "$(echo "$end - $start" | bc)" "$work"
cat "$work"/outputs/*/*/metrics.json
