#!/usr/bin/env bash
# The linters, as CI runs them (.ci/run); a finding fails. Settings: pyproject.toml ([tool.ruff],
# [tool.mypy]).
#   .ci/lint.sh          ruff over the repository, then mypy (strict) over ml_dash/ and agent/
#   .ci/lint.sh ruff     only ruff;   .ci/lint.sh mypy   only mypy
# The tools come from the `lint` extra, part of the `test` extra (whose optional packages, psycopg,
# aiobotocore, ..., mypy reads the types of): this installs `.[test]` into the venv
# (ML_DASH_LINT_VENV, default .venv) first, as the README's test command does. tests/test_lint.py
# runs this script with the suite's own interpreter instead: ML_DASH_LINT_PYTHON=... (no install).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
venv=${ML_DASH_LINT_VENV:-.venv}
case "$venv" in /*) ;; *) venv="$repo/$venv" ;; esac
what=${1:-all}

py=${ML_DASH_LINT_PYTHON:-}
if [ -z "$py" ]; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q -e '.[test]'
  py="$venv/bin/python"
fi
case "$py" in */*) [ "${py#/}" != "$py" ] || py="$repo/$py" ;; esac  # mypy runs from another folder

if [ "$what" = all ] || [ "$what" = ruff ]; then
  echo "ruff check"
  "$py" -m ruff check .
  echo "ruff format --check"
  "$py" -m ruff format --check .
fi

if [ "$what" = all ] || [ "$what" = mypy ]; then
  echo "mypy (strict) ml_dash, ml_dash.agent"
  # mypy must see the installed layout, agent/ as ml_dash.agent; it cannot follow the editable
  # install's import hook. A tree of links gives it that layout; its paths are mapped back.
  tree="$repo/.mypy_cache/layout"
  rm -rf "$tree" && mkdir -p "$tree/ml_dash"
  for entry in "$repo"/ml_dash/*; do
    case "$entry" in */__pycache__) continue ;; esac
    ln -s "$entry" "$tree/ml_dash/"
  done
  ln -s "$repo/agent" "$tree/ml_dash/agent"
  (cd "$tree" && "$py" -m mypy --config-file "$repo/pyproject.toml" --cache-dir "$repo/.mypy_cache" -p ml_dash) \
    | sed -e 's#^ml_dash/agent/#agent/#'
fi
