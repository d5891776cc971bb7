"""Execution sessions: persistent shell/python/node interpreters in a bubblewrap sandbox.

Pure Python (no Django); the server layer maps its settings onto these objects, e.g.
``EXEC_SESSIONS_ALLOW_UNSAFE`` -> ``allow_unsafe=True``.
"""

from .drivers import DRIVERS, NodeDriver, PythonDriver, ShellDriver, get_driver, register_driver
from .procutil import find_orphans, kill_orphans, session_pids
from .sandbox import (
    MARKER_ENV,
    SANDBOX_WORKDIR,
    SandboxConfig,
    SandboxError,
    SandboxUnavailable,
    sandbox_available,
)
from .session import ExecResult, ExecutionDriver, SessionDead

__all__ = [
    "DRIVERS",
    "MARKER_ENV",
    "SANDBOX_WORKDIR",
    "ExecResult",
    "ExecutionDriver",
    "NodeDriver",
    "PythonDriver",
    "SandboxConfig",
    "SandboxError",
    "SandboxUnavailable",
    "SessionDead",
    "ShellDriver",
    "find_orphans",
    "get_driver",
    "kill_orphans",
    "register_driver",
    "sandbox_available",
    "session_pids",
]
