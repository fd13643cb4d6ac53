#!/usr/bin/env bash
# Once, when no other branch is changing code: format the whole tree and switch the format check
# on. Every file changes, so anything in flight elsewhere would conflict; hence one go, at the end.
#   1. the annotation modernisation ruff holds back until then (List -> list, Optional[X] -> X | None,
#      unquoted annotations: the UP006/UP007/UP035/UP037/UP045 lines in pyproject.toml), applied
#      and then switched on, by removing those lines;
#   2. `ruff format` over the repository;
#   3. the FORMAT line of .ci/lint.sh uncommented, so that CI fails on unformatted code.
# Then: run .ci/lint.sh and the whole suite, look at the diff, and commit it as one commit.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${ML_DASH_LINT_PYTHON:-.venv/bin/python}

"$py" -m ruff check --exit-zero --fix --unsafe-fixes --select UP006,UP007,UP035,UP037,UP045 .
# the ignore entries of the modernisation, marked in pyproject.toml
python3 - <<'EOF'
import re
from pathlib import Path

p = Path("pyproject.toml")
text = p.read_text()
block = re.compile(r'\n    # -- Annotation modernisation.*?\n    "UP006", "UP007", "UP035", "UP037", "UP045",\n', re.S)
new, n = block.subn("\n", text)
if n != 1:
    raise SystemExit("pyproject.toml: the modernisation ignores are not where .ci/format-tree.sh expects them")
p.write_text(new)
EOF
# A fix can leave an import unused (typing's List once nothing uses it), a TYPE_CHECKING block
# empty, or imports unsorted. ruff keeps unused imports of an __init__.py (they may be re-exports):
# the names from typing among them, never re-exported here, are dropped below.
"$py" -m ruff check --exit-zero --fix --unsafe-fixes --select F401,I001,TC005 .
"$py" -m ruff check --exit-zero --select F401 --output-format json . | python3 -c '
import json, re, sys
from pathlib import Path
drop = {}
for f in json.load(sys.stdin):
    m = re.fullmatch(r"`typing\.(\w+)` imported but unused", f["message"])
    if m and f["filename"].endswith("__init__.py"):
        drop.setdefault(f["filename"], []).append((f["location"]["row"], m.group(1)))
for name, found in drop.items():
    lines = Path(name).read_text().split("\n")
    for row, word in found:
        head, _, names = lines[row - 1].partition(" import ")
        kept = [n for n in names.split(", ") if n != word]
        indent = head[: len(head) - len(head.lstrip())]
        lines[row - 1] = head + " import " + ", ".join(kept) if kept else indent + "pass"
    Path(name).write_text("\n".join(lines))
'
"$py" -m ruff check --exit-zero --fix --unsafe-fixes --select F401,I001,TC005 .
"$py" -m ruff format .
sed -i 's|^  # "\$py" -m ruff format --check \.$|  "$py" -m ruff format --check .|' .ci/lint.sh
grep -q '^  "\$py" -m ruff format --check \.$' .ci/lint.sh || { echo ".ci/lint.sh: FORMAT line not switched on" >&2; exit 1; }
"$py" -m ruff check . || echo "fix the findings above by hand (a \`# noqa\` the formatter moved: put it back on its line)"
echo "formatted; now: .ci/lint.sh, the whole suite (.ci/pythons.sh too: Python 3.9 reads X | None only"
echo "in annotations), then commit the whole diff as one commit"
