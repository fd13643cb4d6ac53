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
# venvs are reused. Two versions run at a time (ML_DASH_CI_LANES), each from its own copy of the
# checkout, its output kept apart and printed whole at the end with each version's times.
# ML_DASH_CI_PYTHONS="3.9 3.13" runs only those versions (by hand; CI runs them all).
set -euo pipefail
cd "$(dirname "$0")/.."

SUPPORTED=(3.9 3.10 3.11 3.12 3.13)
OLDEST=${SUPPORTED[0]}
NEWEST=${SUPPORTED[${#SUPPORTED[@]}-1]}
read -r -a VERSIONS <<< "${ML_DASH_CI_PYTHONS:-${SUPPORTED[*]}}"
default=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')

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

runs_slow() { [ "$1" = "$OLDEST" ] || [ "$1" = "$NEWEST" ]; }  # the slow tests: oldest and newest only

# One version's install and tests, its output to its own log (the lanes below run side by side).
run_version() {  # run_version VERSION LOG
  local v=$1 log=$2 py venv start installed what marks checkout
  {
    if ! py=$(find_python "$v"); then
      if [ "${ML_DASH_CI_ALLOW_MISSING_PYTHONS:-0}" = 1 ]; then
        echo "SUMMARY python $v: NOT FOUND, skipped (ML_DASH_CI_ALLOW_MISSING_PYTHONS=1)"; return 0
      fi
      echo "python $v not found (pyenv or python$v on PATH): every supported version must be tested" \
           "(ML_DASH_CI_ALLOW_MISSING_PYTHONS=1 to skip it)"
      return 1
    fi
    venv="/tmp/ml-dash-py$v"
    start=$(date +%s)
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
    wheel_install "$venv" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; } \
      || { echo "SUMMARY python $v: install FAILED"; return 1; }
    installed=$(date +%s)
    if runs_slow "$v"; then
      what="suite with slow"; marks="not default_only"
    else
      what="fast suite"; marks="not default_only and not slow"
    fi
    # A copy of the checkout per version: lanes running at once never share a working folder.
    checkout="$ML_DASH_WHEEL_DIR/checkout-$v"
    rm -rf "$checkout" && cp -a "$ML_DASH_WHEEL_CHECKOUT" "$checkout"
    echo "python $v ($py): $what (-m \"$marks\")"
    local rc=0
    ML_DASH_WHEEL_CHECKOUT="$checkout" wheel_pytest "$venv" -q -m "$marks" || rc=$?
    echo "SUMMARY python $v: install $(( installed - start )) s, $what $(( $(date +%s) - installed )) s$([ $rc = 0 ] || echo ", FAILED (exit $rc)")"
    return $rc
  } >"$log" 2>&1
}

# Lanes: the suites are ~85 % CPU-bound on one core each, so on 2 cores two at a time take about
# half the time of one after the other. The two versions that run the slow tests start first, one
# per lane. ML_DASH_CI_LANES=1 runs them one after the other.
LANES=${ML_DASH_CI_LANES:-2}
todo=()
for v in "${VERSIONS[@]}"; do
  [ "$v" = "$default" ] && continue  # the README's command covers it
  if runs_slow "$v"; then todo=("$v" "${todo[@]}"); else todo+=("$v"); fi
done
logs="$ML_DASH_WHEEL_DIR/logs" && mkdir -p "$logs"
all_start=$(date +%s)
lane() {  # lane K: versions K, K+LANES, ... of todo, one after the other
  local k=$1 rc=0 i
  for (( i = k; i < ${#todo[@]}; i += LANES )); do
    run_version "${todo[$i]}" "$logs/${todo[$i]}.log" || rc=1
  done
  return $rc
}
pids=()
for (( k = 0; k < LANES && k < ${#todo[@]}; k++ )); do lane "$k" & pids+=($!); done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done

for v in "${VERSIONS[@]}"; do  # each version's whole output, in the order of SUPPORTED
  [ -f "$logs/$v.log" ] || continue
  grep -v "^SUMMARY " "$logs/$v.log" || true
done
echo "--- every supported Python ($(( $(date +%s) - all_start )) s in all, $LANES at a time; $default: the README's command, next) ---"
for v in "${VERSIONS[@]}"; do
  [ -f "$logs/$v.log" ] && { grep "^SUMMARY " "$logs/$v.log" | sed 's/^SUMMARY //'; }
done
exit $failed
