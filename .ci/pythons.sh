#!/usr/bin/env bash
# Every supported Python (pyproject: requires-python >= 3.9), each in a venv of its own. The README's
# command (.ci/run, last) runs the whole suite on the default python3; here the other versions run
# the suite against the package as users install it (the wheel, .ci/wheel.sh), split by the markers
# registered in pyproject.toml and applied in tests/conftest.py:
#   - every version: -m "not default_only" (no Chromium, PostgreSQL/S3, frameworks' venv, benchmark
#     smoke runs, linters: those run once, with the default python3);
#   - the versions between the oldest and the newest also leave out the slow real-process tests
#     (kill -9, fork, every start method), which the oldest (3.9) and the newest (3.13) run.
# Interpreters come from pyenv (~/.pyenv/versions/3.X.*), else pythonX.Y on PATH; a missing one
# fails CI (ML_DASH_CI_ALLOW_MISSING_PYTHONS=1 skips it instead, with a line saying so). Idempotent:
# venvs are reused. Each version's install and test times are printed at the end.
# ML_DASH_CI_PYTHONS="3.9 3.13" runs only those versions (by hand; CI runs them all).
set -euo pipefail
cd "$(dirname "$0")/.."

SUPPORTED=(3.9 3.10 3.11 3.12 3.13)
OLDEST=${SUPPORTED[0]}
NEWEST=${SUPPORTED[${#SUPPORTED[@]}-1]}
read -r -a VERSIONS <<< "${ML_DASH_CI_PYTHONS:-${SUPPORTED[*]}}"
default=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
summary=()

find_python() {
  local v=$1 p
  for p in "$HOME"/.pyenv/versions/"$v".*/bin/python; do
    [ -x "$p" ] && { echo "$p"; return 0; }
  done
  command -v "python$v" 2>/dev/null || return 1
}

# shellcheck source=wheel.sh
source .ci/wheel.sh
export ML_DASH_WHEEL_DIR=/tmp/ml-dash-wheel-pythons  # apart from the habits block's
wheel_build python3 >/dev/null

all_start=$(date +%s)
for v in "${VERSIONS[@]}"; do
  [ "$v" = "$default" ] && continue  # the README's command covers it
  if ! py=$(find_python "$v"); then
    if [ "${ML_DASH_CI_ALLOW_MISSING_PYTHONS:-0}" = 1 ]; then
      summary+=("python $v: NOT FOUND, skipped (ML_DASH_CI_ALLOW_MISSING_PYTHONS=1)"); continue
    fi
    echo "python $v not found (pyenv or python$v on PATH): every supported version must be tested" \
         "(ML_DASH_CI_ALLOW_MISSING_PYTHONS=1 to skip it)" >&2
    exit 1
  fi
  venv="/tmp/ml-dash-py$v"
  start=$(date +%s)
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  wheel_install "$venv" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  installed=$(date +%s)
  if [ "$v" = "$OLDEST" ] || [ "$v" = "$NEWEST" ]; then
    what="suite with slow"; marks="not default_only"
  else
    what="fast suite"; marks="not default_only and not slow"
  fi
  echo "python $v ($py): $what (-m \"$marks\")"
  wheel_pytest "$venv" -q -m "$marks"
  summary+=("python $v: install $(( installed - start )) s, $what $(( $(date +%s) - installed )) s")
done

echo "--- every supported Python ($(( $(date +%s) - all_start )) s in all; $default: the README's command, next) ---"
printf '%s\n' "${summary[@]}"
