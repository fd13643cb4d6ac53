#!/usr/bin/env bash
# Framework hooks (ml_dash.integrations): PyTorch Lightning, transformers and Keras 3 in a venv of
# their own (.venv-integrations in the checkout), so that the main venv stays small and its run fast.
# Idempotent: the venv is reused.
# Measured on 2 cores: 1.3 GB, 2.5-4 min to install, 2-3 min of tests (benchmarks/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${ML_DASH_INTEGRATIONS_VENV:-.venv-integrations}"

start=$(date +%s)
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# torch first, pinned: 2.13.0 is the CPU build this machine keeps on disk. Unpinned, lightning's
# or keras' requirement would pull a CUDA build of several GB.
"$VENV/bin/pip" install -q torch==2.13.0
# pytest by name rather than the test extra: that one also carries the dashboard's browser driver;
# tensorboardX: the Trainer's own TensorBoard writer, the baseline of benchmarks/integrations.py.
"$VENV/bin/pip" install -q -e '.[integrations]' 'pytest>=7.4' 'pytest-timeout>=2.2' 'tensorboardX>=2.6'
installed=$(date +%s)
echo "integrations venv: installed in $((installed - start)) s ($(du -sh "$VENV" | cut -f1))"

# Offline: the tests build their tiny models from configs; nothing comes from a hub.
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 KERAS_BACKEND=torch \
  ML_DASH_REQUIRE_FRAMEWORKS=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/integrations tests/capture
echo "integrations tests: $(( $(date +%s) - installed )) s"
