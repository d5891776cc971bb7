"""Concrete execution drivers (shell, python, node) and the mode registry.

Usage::

    driver = get_driver("python")(workdir, session_id="abc", allow_unsafe=False)
    driver.start()
    driver.exec("x = 41")
    driver.exec("x + 1").output   # '42\\n'
    driver.stop()

Interrupt behaviour on timeout (see :mod:`.session`):

* python: SIGINT raises KeyboardInterrupt in the running code; the REPL catches it, the
  context survives (unless the user code swallows KeyboardInterrupt: then it is killed).
* node: the code runs with ``vm`` ``breakOnSigint``; the context survives.
* shell: SIGINT (repeated during the grace period) kills foreground commands and the
  shell continues; a pure-builtin loop (``while true; do :; done``) ignores it, so the
  session is killed and must be restarted.
"""

from __future__ import annotations

import os
import shutil
from functools import cache
from pathlib import Path

from .sandbox import SANDBOX_PATH, SandboxError
from .session import ExecutionDriver

_REPL_DIR = Path(__file__).with_name("repl")


@cache
def _repl_source(name: str) -> str:
    """Load a REPL wrapper; whole-line comments are dropped to keep ``ps`` output readable."""
    text = (_REPL_DIR / name).read_text(encoding="utf-8")
    comment = {".sh": "#", ".js": "//"}.get(Path(name).suffix)
    if comment:
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(comment))
    return text


def find_binary(*names: str) -> str:
    """Find an interpreter that is also visible inside the sandbox (i.e. lives under /usr).

    The host's own PATH is deliberately not used: e.g. a pyenv python under /root would not
    exist inside the sandbox.
    """
    for name in names:
        path = shutil.which(name, path=SANDBOX_PATH)
        if path and os.path.realpath(path).startswith("/usr/"):
            return path
    raise SandboxError(f"no {' or '.join(names)} found under /usr (required inside the sandbox)")


class ShellDriver(ExecutionDriver):
    """A persistent ``bash``: cd, export, variables and functions persist between execs."""

    mode = "shell"
    repeat_interrupt = True

    def command(self) -> list[str]:
        bash = find_binary("bash")
        return [bash, "--noprofile", "--norc", "-c", _repl_source("shell_repl.sh"), "switchboard-shell"]

    def encode_request(self, token: str, code: str) -> bytes:
        """One line per request: backslashes doubled, newlines as ``\\n`` (see shell_repl.sh)."""
        if "\0" in code:
            raise ValueError("shell code must not contain NUL characters")
        escaped = code.replace("\\", "\\\\").replace("\n", "\\n")
        return f"{token} {escaped}\n".encode()


class PythonDriver(ExecutionDriver):
    """A persistent Python interpreter: variables, imports and definitions persist."""

    mode = "python"

    def command(self) -> list[str]:
        python = find_binary("python3")
        return [python, "-u", "-c", _repl_source("python_repl.py")]

    def extra_env(self) -> dict[str, str]:
        return {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


class NodeDriver(ExecutionDriver):
    """A persistent Node.js ``vm`` context: globals, let/const and require()s persist."""

    mode = "node"
    start_timeout = 30.0

    def command(self) -> list[str]:
        node = find_binary("node", "nodejs")
        return [node, "-e", _repl_source("node_repl.js")]


DRIVERS: dict[str, type[ExecutionDriver]] = {}


def register_driver(mode: str, driver: type[ExecutionDriver]) -> None:
    """Make ``driver`` available under ``mode`` (replacing any previous registration)."""
    DRIVERS[mode] = driver


def get_driver(mode: str) -> type[ExecutionDriver]:
    """Return the driver class for ``mode``; KeyError lists the available modes."""
    try:
        return DRIVERS[mode]
    except KeyError:
        raise KeyError(f"unknown execution mode {mode!r}; available: {', '.join(sorted(DRIVERS))}")


register_driver("shell", ShellDriver)
register_driver("python", PythonDriver)
if shutil.which("node"):
    register_driver("node", NodeDriver)
