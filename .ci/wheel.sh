#!/usr/bin/env bash
# The test suite against a regular (non-editable) install of the wheel, instead of the checkout.
#
# Run as a script (below), or sourced by another CI step (a run per Python version, say), so that
# its suite runs from the wheel without a run of its own:
#     source .ci/wheel.sh
#     wheel_build "$py"                      # once (any Python with pip): the wheel, ML_DASH_WHEEL
#     wheel_install "$venv"                  # instead of `pip install -e '.[test]'`
#     wheel_pytest "$venv" -q -m "not slow"  # pytest in a copy of the checkout without the package
# or run as a script: `.ci/wheel.sh [PYTHON] [pytest args...]` (default python3, the whole suite).
#
# Why a copy: the checkout's ml_dash/ would shadow the installed one (pytest puts the rootdir on
# sys.path, and tests start child processes with the checkout on PYTHONPATH or as their cwd), and
# it lacks ml_dash.agent, which only the install maps from agent/. The copy holds everything else
# that tests read (tests/, README.md, pyproject.toml, benchmarks/, docs/), so nothing but the wheel
# can be imported as ml_dash. tests/test_wheel.py checks the wheel's contents (ML_DASH_WHEEL).

_wheel_files() {  # _wheel_files PATHSPEC...: NUL-separated files that exist, as git sees them
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard -- "$@" \
      | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done
  else  # not a git checkout: every file but caches, venvs and build outputs
    find . -type f -not -path '*/__pycache__/*' -not -path './.venv/*' -not -path './build/*' \
      -not -path './.git/*' -not -path '*.egg-info/*' -printf '%P\0' \
      | python3 -c 'import sys, fnmatch
spec = sys.argv[1:]; keep = [p for p in spec if not p.startswith(":!")]; drop = [p[2:] for p in spec if p.startswith(":!")]
inside = lambda f, p: p == "." or f == p or f.startswith(p.rstrip("/") + "/")
names = sys.stdin.buffer.read().decode().split("\0")
sys.stdout.write("".join(f + "\0" for f in names if f and any(inside(f, p) for p in keep) and not any(inside(f, p) for p in drop)))' "$@"
  fi
}

wheel_build() {  # wheel_build [PYTHON]: the wheel and the copy, under ML_DASH_WHEEL_DIR
  local python=${1:-python3} repo out
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  out=${ML_DASH_WHEEL_DIR:-/tmp/ml-dash-wheel}
  rm -rf "$out" && mkdir -p "$out/dist" "$out/src" "$out/checkout"
  # Files as git sees them (tracked, and untracked unless ignored): the package is built from a
  # copy, so that a stale build/ folder of the checkout cannot add files to the wheel.
  (cd "$repo" && _wheel_files pyproject.toml README.md ml_dash agent | xargs -0 cp --parents -t "$out/src")
  (cd "$repo" && _wheel_files . ':!ml_dash' ':!agent' | xargs -0 cp --parents -t "$out/checkout")
  "$python" -m pip wheel -q --no-deps -w "$out/dist" "$out/src" >"$out/build.log" 2>&1 \
    || { cat "$out/build.log" >&2; return 1; }
  ML_DASH_WHEEL=$(ls "$out"/dist/ml_dash-*.whl)
  export ML_DASH_WHEEL
  ML_DASH_WHEEL_CHECKOUT="$out/checkout"
  export ML_DASH_WHEEL_CHECKOUT
  echo "wheel: $ML_DASH_WHEEL"
}

wheel_install() {  # wheel_install VENV: the wheel with the test extras, replacing any other install
  local venv=$1
  "$venv/bin/pip" uninstall -q -y ml-dash >/dev/null 2>&1 || true
  "$venv/bin/pip" install -q "${ML_DASH_WHEEL}[test]"
}

wheel_pytest() {  # wheel_pytest VENV [pytest args...]: the suite, from the copy, against the wheel
  local venv=$1; shift
  (cd "$ML_DASH_WHEEL_CHECKOUT" && "$venv/bin/python" -m pytest -p no:cacheprovider "$@")
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  python=${1:-python3}; shift || true
  build_venv=/tmp/ml-dash-wheel-build-venv  # any venv with pip: it only builds the wheel
  [ -x "$build_venv/bin/python" ] || "$python" -m venv "$build_venv"
  wheel_build "$build_venv/bin/python"
  # The test venv inside the copy, where a checkout's own .venv is (the README's command): a few
  # tests expect the running script (pytest's, from the venv) under the project root (RUN.entry).
  venv="$ML_DASH_WHEEL_CHECKOUT/.venv"
  "$python" -m venv "$venv"
  wheel_install "$venv"
  wheel_pytest "$venv" -q "$@"
fi
