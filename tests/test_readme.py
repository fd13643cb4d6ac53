"""Every code block of README.md runs as written.

How the blocks are run (write README blocks to fit; the README's "Repository" section points here):

* Fenced blocks tagged ``python`` or ``bash`` (``sh`` too) run; any other fence (untagged output
  samples, ``text``, ``toml``, ``nginx``, ...) is not run.
* They run top to bottom, in the order of the file, as one session: in an empty temporary folder
  that is also ``$HOME`` (so ``~`` and the default spool ``~/.cache/ml-dash/spool`` are private to
  the test), with no ``ML_DASH_*`` or ``XDG_*`` variable set and the test's interpreter and
  commands (``python``, ``ml-dash``, ``ml-dash-agent``) first on ``PATH``.
* A ``bash`` block runs under ``set -euo pipefail``; what it exports, and the folder it ends in,
  carry over to the later blocks. A ``python`` block is saved as a file and run in a fresh
  interpreter (``python block.py``) with that environment, in that folder.
* The session runs in a fresh network namespace of its own where the machine allows one, so
  servers listen on the ports the README names (8765) without meeting anything else on this
  machine; without one it runs on this machine's loopback when port 8765 is free, else the test
  is skipped with the reason.
* A block passes when it exits 0 within 120 s. When every block has run, no session may be left
  in the spool: a remote example that did not reach its server fails the test.

Markers, on the line right before the fence (the reason is required and shown in the report):

* ``<!-- readme-test: skip: WHY -->``: not run; for what cannot run here at all, such as the
  install line of a fresh machine. Keep these few.
* ``<!-- readme-test: background: WHY -->``: started in the background (a server that runs until
  stopped); the next block starts once it has printed its first line of output; it must still be
  running when the session ends, and is then stopped.

Run by hand: ``python tests/test_readme.py README.md WORKDIR`` (the session, without the namespace).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RUN_LANGS = {"python": "python", "bash": "bash", "sh": "bash"}
BLOCK_TIMEOUT = 120.0
#: Ports the README names, which must be free when the session runs on this machine's loopback.
README_PORTS = (8765,)

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*readme-test:\s*(?P<kind>[a-z-]+)\s*(?::\s*(?P<why>.*?))?\s*-->\s*$")


class ReadmeError(AssertionError):
    """A README block failed, or the README breaks the conventions above."""


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str  # "python", "bash", or "" (not run)
    code: str
    mark: Optional[str] = None  # "skip", "background"
    why: str = ""

    @property
    def where(self) -> str:
        return f"README line {self.line} ({self.lang or 'not run'}{', ' + self.mark if self.mark else ''})"


def parse(text: str) -> List[Block]:
    """The fenced blocks of a markdown text, with their markers."""
    lines = text.splitlines()
    blocks: List[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m["indent"]), m["fence"], m["info"].strip()
        start = i
        body: List[str] = []
        i += 1
        while i < len(lines) and not re.match(rf"^ *{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        i += 1
        lang = info.split()[0].lower() if info else ""
        block = Block(start + 1, RUN_LANGS.get(lang, ""), "\n".join(body) + "\n")
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        mk = _MARKER.match(lines[before]) if before >= 0 else None
        if mk:
            block.mark, block.why = mk["kind"], (mk["why"] or "").strip()
            if block.mark not in ("skip", "background"):
                raise ReadmeError(f"{block.where}: unknown marker {block.mark!r} (skip or background)")
            if not block.why:
                raise ReadmeError(
                    f"{block.where}: a {block.mark} marker needs a reason: <!-- readme-test: {block.mark}: WHY -->"
                )
            if not block.lang:
                raise ReadmeError(f"{block.where}: a marker on a block that is never run")
        elif lines[before : before + 1] and "readme-test" in lines[before]:
            raise ReadmeError(f"README line {before + 1}: unreadable marker {lines[before]!r}")
        blocks.append(block)
    return blocks


def _tail(text: str, n: int = 4000) -> str:
    return text if len(text) <= n else "...\n" + text[-n:]


def _read_env(path: Path) -> Dict[str, str]:
    out = {}
    for item in path.read_bytes().split(b"\0"):
        key, eq, value = item.decode("utf-8", "surrogateescape").partition("=")
        if eq and key:
            out[key] = value
    return out


def base_env(home: Path) -> Dict[str, str]:
    """The environment the first block sees."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ML_DASH_", "XDG_", "PYTEST_", "VIRTUAL_ENV", "PYTHONHOME"))
    }
    env["HOME"] = str(home)
    env["PWD"] = str(home)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Session:
    """Runs blocks one after another in ``home``; see the module docstring."""

    home: Path
    env: Dict[str, str] = field(default_factory=dict)
    background: List[tuple] = field(default_factory=list)
    ran: List[str] = field(default_factory=list)
    timeout: float = BLOCK_TIMEOUT

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = self.env or base_env(self.home)
        self._scratch = self.home / ".readme-test"
        self._scratch.mkdir(exist_ok=True)

    def _cwd(self) -> str:
        cwd = self.env.get("PWD", str(self.home))
        return cwd if os.path.isdir(cwd) else str(self.home)

    def run(self, block: Block, n: int) -> None:
        if block.mark == "skip" or not block.lang:
            return
        script = self._scratch / (f"block{n}.py" if block.lang == "python" else f"block{n}.sh")
        script.write_text(block.code)
        if block.mark == "background":
            self._start_background(block, script)
        elif block.lang == "python":
            self._run(block, ["python", str(script)])
        else:
            env_out = self._scratch / f"env{n}"
            self._run(
                block,
                ["bash", "-c", 'set -euo pipefail; source "$1"; env -0 > "$2"', "bash", str(script), str(env_out)],
            )
            self.env = _read_env(env_out)
        self.ran.append(block.where)

    def _run(self, block: Block, cmd: List[str]) -> None:
        # A session of its own, so that on timeout whatever the block started is stopped too.
        proc = subprocess.Popen(
            cmd,
            cwd=self._cwd(),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise ReadmeError(
                f"{block.where} did not finish within {self.timeout:.0f} s (a server? mark it "
                f"background):\n{block.code}\n--- stdout\n{_tail(out)}\n--- stderr\n{_tail(err)}"
            ) from None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # nothing a finished block started outlives it
            except ProcessLookupError:
                pass
        if proc.returncode != 0:
            raise ReadmeError(
                f"{block.where} exited {proc.returncode}:\n{block.code}\n--- stdout\n"
                f"{_tail(out)}\n--- stderr\n{_tail(err)}"
            )

    def _start_background(self, block: Block, script: Path) -> None:
        proc = subprocess.Popen(
            ["bash", "-c", 'set -euo pipefail; source "$1"', "bash", str(script)],
            cwd=self._cwd(),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        first: List[str] = []
        got = threading.Event()

        def pump() -> None:  # keep reading, so a chatty server never blocks on a full pipe
            for line in proc.stdout:
                first.append(line)
                got.set()
            got.set()

        threading.Thread(target=pump, daemon=True).start()
        self.background.append((block, proc, first))
        if not got.wait(self.timeout) or (proc.poll() is not None and not first):
            raise ReadmeError(
                f"{block.where} printed nothing within {self.timeout:.0f} s (or exited "
                f"{proc.poll()}):\n{block.code}{''.join(first)}"
            )

    def finish(self) -> None:
        """Check that background blocks still run, then stop them; check that the spool is empty."""
        problems = []
        for block, proc, output in self.background:
            if proc.poll() is not None:
                problems.append(f"{block.where} stopped early (exit {proc.returncode}):\n{_tail(''.join(output))}")
                continue
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.background.clear()
        spool = Path(self.env.get("ML_DASH_SPOOL_DIR") or Path(self.home, ".cache", "ml-dash", "spool"))
        left = sorted(p.parent.name for p in spool.glob("*/manifest.json")) if spool.is_dir() else []
        if left:
            problems.append(f"sessions left in the spool {spool} (an example did not reach its server): {left}")
        if problems:
            raise ReadmeError("\n".join(problems))

    def abort(self) -> None:
        for _, proc, _ in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.background.clear()


def run_markdown(text: str, home: Path, timeout: float = BLOCK_TIMEOUT) -> Session:
    """Run every block of ``text`` as one session in ``home``; raises :class:`ReadmeError`."""
    session = Session(home, timeout=timeout)
    try:
        for n, block in enumerate(parse(text)):
            session.run(block, n)
        session.finish()
    finally:
        session.abort()
    return session


def _loopback_up() -> None:
    """In a fresh network namespace the loopback interface starts down: bring it up."""
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = fcntl.ioctl(s, siocgifflags, struct.pack("16sH14s", b"lo", 0, b""))
        flags = struct.unpack("16sH14s", req)[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH14s", b"lo", flags | iff_up, b""))


def _main(argv: List[str]) -> int:
    readme, home = Path(argv[0]), Path(argv[1])
    if "--netns" in argv:
        _loopback_up()
    try:
        session = run_markdown(readme.read_text(), home)
    except ReadmeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"ran {len(session.ran)} blocks:", *session.ran, sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


# -- the tests -----------------------------------------------------------------------------------

import pytest  # noqa: E402  (the module also runs as a plain script, above)


def _netns_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.timeout(900)
def test_every_readme_block_runs_as_written(tmp_path):
    cmd = [sys.executable, __file__, str(README), str(tmp_path / "home")]
    if _netns_works():
        cmd = ["unshare", "--net", *cmd, "--netns"]
    else:
        busy = [p for p in README_PORTS if not _port_free(p)]
        if busy:
            pytest.skip(f"no network namespace here and port(s) {busy} in use: the README's servers cannot listen")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=850)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    ran = proc.stdout.splitlines()[1:]
    wanted = [b for b in parse(README.read_text()) if b.lang and b.mark != "skip"]
    assert len(ran) == len(wanted) and len(wanted) >= 4, proc.stdout


def test_readme_markers_are_few_and_give_reasons():
    blocks = parse(README.read_text())
    skipped = [b for b in blocks if b.mark == "skip"]
    assert all(b.why for b in blocks if b.mark)
    assert len(skipped) <= max(2, len(blocks) // 5), [b.where for b in skipped]


def test_the_runner_sees_a_failing_block_and_carries_exports(tmp_path):
    ok = """
```bash
export GREETING="hello there"
mkdir -p work && cd work
```

```python
import os, pathlib
assert os.environ["GREETING"] == "hello there"
pathlib.Path("seen").write_text(os.getcwd())
```

```text
not run: this is output
```

<!-- readme-test: skip: shows a command for another machine -->
```bash
exit 7
```
"""
    session = run_markdown(ok, tmp_path / "ok", timeout=60)
    assert len(session.ran) == 2
    assert (tmp_path / "ok" / "work" / "seen").read_text() == str(tmp_path / "ok" / "work")

    with pytest.raises(ReadmeError, match=r"line 1 \(python\) exited 1"):
        run_markdown("```python\nraise SystemExit(1)\n```\n", tmp_path / "bad", timeout=60)
    with pytest.raises(ReadmeError, match="exited 1"):
        run_markdown("```bash\nfalse\necho unreachable\n```\n", tmp_path / "bad2", timeout=60)
    with pytest.raises(ReadmeError, match="did not finish within 2 s"):
        run_markdown(
            f"```bash\n{sys.executable} -c 'import time; time.sleep(60)' &\nwait\n```\n", tmp_path / "slow", timeout=2
        )
    with pytest.raises(ReadmeError, match="needs a reason"):
        parse("<!-- readme-test: skip -->\n```bash\ntrue\n```\n")
    with pytest.raises(ReadmeError, match="unknown marker"):
        parse("<!-- readme-test: ignore: x -->\n```bash\ntrue\n```\n")


def test_the_runner_keeps_background_blocks_running_and_checks_the_spool(tmp_path):
    server = f"""
<!-- readme-test: background: a server -->
```bash
{sys.executable} -c "import time; print('ready', flush=True); time.sleep(600)"
```

```python
print("after the server started")
```
"""
    session = run_markdown(server, tmp_path / "bg", timeout=60)
    assert len(session.ran) == 2 and session.background == []
    died = """
<!-- readme-test: background: a server that dies -->
```bash
echo ready
```

```python
import time; time.sleep(0.5)
```
"""
    with pytest.raises(ReadmeError, match="stopped early"):
        run_markdown(died, tmp_path / "died", timeout=60)
    home = tmp_path / "left"
    (home / ".cache" / "ml-dash" / "spool" / "s1").mkdir(parents=True)
    (home / ".cache" / "ml-dash" / "spool" / "s1" / "manifest.json").write_text("{}")
    with pytest.raises(ReadmeError, match="left in the spool"):
        run_markdown("```python\npass\n```\n", home, timeout=60)
