"""Build and launch sandboxed processes for execution sessions.

Every session process is started through the same launcher chain::

    setpriv --reuid U --regid U --clear-groups --   (only when the server runs as root)
    prlimit --cpu --data --as --nproc --fsize --nofile --core --
    env --default-signal=INT,QUIT --
    bwrap <namespaces, read-only system, private /tmp, /workspace> --   (omitted in unsafe mode)
    <interpreter>

The chain uses small util-linux/coreutils binaries instead of a ``preexec_fn`` because
``preexec_fn`` is not safe in a multi-threaded server (ASGI/worker threads).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

#: Environment variable carried by every sandbox process (and in bwrap's argv) so that
#: leftovers can be found after a server restart, see :mod:`.procutil`.
MARKER_ENV = "SWITCHBOARD_EXEC_SESSION"
#: Path of the session working directory inside the sandbox.
SANDBOX_WORKDIR = "/workspace"
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
# Top-level directories that are symlinks into /usr on merged-/usr systems (Debian >= 12).
_ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
# The only pieces of /etc the interpreters need; the rest of /etc (shadow, ssh keys, the
# server's config) stays invisible.
_ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/alternatives",
    "/etc/mime.types",
)
_ETC_NETWORK_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/ssl", "/etc/ca-certificates")


class SandboxError(RuntimeError):
    """A session process could not be set up (bad workdir, interpreter missing, ...)."""


class SandboxUnavailable(SandboxError):
    """bubblewrap cannot start on this host and the unsafe fallback was not allowed."""


@dataclass(frozen=True)
class SandboxConfig:
    """Resource limits and isolation options for one session process tree.

    ``memory_mb`` is enforced with RLIMIT_DATA (heap and private mappings) and
    ``address_space_mb`` with RLIMIT_AS; the latter defaults to ``memory_mb + 1536`` because
    V8 reserves about 1 GiB of address space at start-up. ``cpu_seconds`` is a per-process
    lifetime CPU budget (the persistent interpreter accumulates it across executions; the
    per-execution wall-clock timeout is the primary guard). ``max_processes`` (RLIMIT_NPROC)
    counts the tasks of the sandbox uid, which is why the server drops to a per-session uid
    when it runs as root (the kernel never enforces RLIMIT_NPROC for root). A server that
    does not run as root keeps its own uid for sessions; then all of that user's tasks
    (including the server's threads) count against ``max_processes``.
    """

    memory_mb: int = 512
    cpu_seconds: int = 300
    max_processes: int = 64
    max_file_mb: int = 100
    network: bool = False
    address_space_mb: int | None = None
    max_open_files: int = 1024
    tmp_size_mb: int = 64
    bwrap_path: str | None = None
    uid_base: int = 500_000_000
    uid_count: int = 100_000

    def rlimit_args(self) -> list[str]:
        """Return the ``prlimit`` options implementing these limits (soft = hard)."""
        mib = 1024 * 1024
        address_space = self.address_space_mb or self.memory_mb + 1536
        return [
            f"--cpu={self.cpu_seconds}",
            f"--data={self.memory_mb * mib}",
            f"--as={address_space * mib}",
            f"--nproc={self.max_processes}",
            f"--fsize={self.max_file_mb * mib}",
            f"--nofile={self.max_open_files}",
            "--core=0",
        ]


@dataclass
class LaunchSpec:
    """Everything needed to ``Popen`` one session process."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    sandboxed: bool
    uid: int | None


def validate_session_id(session_id: str) -> str:
    """Reject ids that could not be used safely as an argv/env marker."""
    if not _SESSION_ID_RE.match(session_id):
        raise ValueError(f"invalid execution session id {session_id!r}")
    return session_id


def resolve_bwrap(config: SandboxConfig) -> str | None:
    """Return the absolute path of the bwrap binary to use, or None if it does not exist."""
    candidate = config.bwrap_path or shutil.which("bwrap") or "/usr/bin/bwrap"
    if os.sep not in candidate:
        candidate = shutil.which(candidate) or candidate
    return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None


def sandbox_uid(session_id: str, config: SandboxConfig) -> int | None:
    """Pick the unprivileged uid a session runs as, or None to keep the server's uid.

    Only root can switch uid. The uid is derived from the session id so that each session
    normally gets its own RLIMIT_NPROC budget; a rare collision merely shares that budget
    (sessions never see each other's files or processes).
    """
    if os.geteuid() != 0:
        return None
    return config.uid_base + zlib.crc32(session_id.encode()) % config.uid_count


def _host_tool(name: str) -> str:
    path = shutil.which(name, path=SANDBOX_PATH)
    if not path:
        raise SandboxError(f"required host tool {name!r} not found (util-linux/coreutils)")
    return path


def launcher_prefix(config: SandboxConfig, uid: int | None) -> list[str]:
    """Return the privilege-drop / rlimit / signal-reset prefix of the launch command."""
    prefix: list[str] = []
    if uid is not None:
        prefix += [_host_tool("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    prefix += [_host_tool("prlimit"), *config.rlimit_args(), "--"]
    # A server started with SIGINT ignored would pass that on; bash cannot trap a signal
    # that was ignored at entry, so reset it (the timeout interrupt relies on SIGINT).
    prefix += [_host_tool("env"), "--default-signal=INT,QUIT", "--"]
    return prefix


def bwrap_args(
    bwrap: str, config: SandboxConfig, session_id: str, workdir: str | None, env: dict[str, str]
) -> list[str]:
    """Build the bubblewrap part of the command line (everything up to and including ``--``)."""
    args = [bwrap, "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    args += ["--unshare-cgroup-try", "--disable-userns", "--hostname", "sandbox"]
    if not config.network:
        args.append("--unshare-net")
    args += ["--die-with-parent", "--new-session"]
    args += ["--ro-bind", "/usr", "/usr"]
    for path in _ROOT_LINKS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    etc = _ETC_FILES + (_ETC_NETWORK_FILES if config.network else ())
    for path in etc:
        args += ["--ro-bind-try", path, path]
    args += ["--proc", "/proc", "--dev", "/dev"]
    tmp_bytes = str(config.tmp_size_mb * 1024 * 1024)
    # Size-capped tmpfs mounts: otherwise /tmp and /dev/shm could fill the host's RAM.
    args += ["--size", tmp_bytes, "--tmpfs", "/tmp", "--size", tmp_bytes, "--tmpfs", "/dev/shm"]
    if workdir is not None:
        args += ["--bind", workdir, SANDBOX_WORKDIR, "--chdir", SANDBOX_WORKDIR]
    else:
        args += ["--chdir", "/"]
    # The sandbox root and /dev are bwrap-made tmpfs mounts: make them read-only so that only
    # /workspace and the size-capped /tmp and /dev/shm are writable.
    args += ["--remount-ro", "/dev", "--remount-ro", "/"]
    args.append("--clearenv")
    for key, value in env.items():
        args += ["--setenv", key, value]
    args += ["--setenv", MARKER_ENV, session_id, "--"]
    return args


def base_env(session_id: str, home: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return the minimal environment of a session process (nothing from the server leaks)."""
    env = {"PATH": SANDBOX_PATH, "HOME": home, "LANG": "C.UTF-8", "TERM": "dumb", "TMPDIR": "/tmp"}
    env.update(extra or {})
    env[MARKER_ENV] = session_id
    return env


def prepare_workdir(workdir: str | os.PathLike[str], uid: int | None) -> str:
    """Create the workdir, hand it to the sandbox uid and check that uid can reach it.

    Ownership is changed with ``follow_symlinks=False`` because the tree was written by
    untrusted code: a symlink to /etc/shadow must not turn into a chown of /etc/shadow.
    """
    path = Path(workdir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    if uid is None:
        return str(path)
    for parent in path.parents:
        st = parent.stat()
        if not (st.st_mode & stat.S_IXOTH or st.st_uid == uid):
            raise SandboxError(
                f"{parent} is not searchable by the sandbox uid {uid}: the directories above a "
                "session workdir must be world-searchable (chmod o+x)"
            )
    os.chown(path, uid, uid, follow_symlinks=False)
    os.chmod(path, 0o700)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)
    return str(path)


def build_launch(
    inner_argv: list[str],
    *,
    workdir: str,
    session_id: str,
    config: SandboxConfig,
    allow_unsafe: bool = False,
    extra_env: dict[str, str] | None = None,
) -> LaunchSpec:
    """Return the full command for ``inner_argv``, sandboxed if possible.

    Raises :class:`SandboxUnavailable` when bwrap does not work and ``allow_unsafe`` is
    false. With ``allow_unsafe`` the process runs unsandboxed (same uid drop, rlimits and
    cleared environment, but the host filesystem and network are visible).
    """
    validate_session_id(session_id)
    uid = sandbox_uid(session_id, config)
    ok, reason = sandbox_available(config)
    if not ok and not allow_unsafe:
        raise SandboxUnavailable(
            f"bubblewrap sandbox unavailable: {reason}. Install bubblewrap and allow unprivileged "
            "user namespaces, or set EXEC_SESSIONS_ALLOW_UNSAFE=True to run sessions WITHOUT isolation."
        )
    real_workdir = prepare_workdir(workdir, uid)
    prefix = launcher_prefix(config, uid)
    if ok:
        env = base_env(session_id, SANDBOX_WORKDIR, extra_env)
        bwrap = resolve_bwrap(config)
        assert bwrap is not None
        argv = prefix + bwrap_args(bwrap, config, session_id, real_workdir, env) + inner_argv
        # bwrap itself also carries the marker in its own environment.
        return LaunchSpec(argv, {"PATH": SANDBOX_PATH, MARKER_ENV: session_id}, "/", True, uid)
    logger.warning("execution session %s runs WITHOUT sandbox: %s", session_id, reason)
    env = base_env(session_id, real_workdir, extra_env)
    return LaunchSpec(prefix + inner_argv, env, real_workdir, False, uid)


_probe_ok: set[str] = set()


def sandbox_available(config: SandboxConfig | None = None) -> tuple[bool, str]:
    """Check that bwrap really starts a sandbox here by running ``true`` inside one.

    Uses the same launcher chain (uid drop, rlimits, namespaces) as real sessions. Positive
    results are cached per bwrap path; failures are re-probed on every call.
    """
    config = config or SandboxConfig()
    bwrap = resolve_bwrap(config)
    if bwrap is None:
        return False, f"bwrap binary not found ({config.bwrap_path or 'bwrap on PATH'})"
    if bwrap in _probe_ok:
        return True, f"{bwrap} works"
    true_bin = shutil.which("true", path="/usr/bin:/bin") or "/usr/bin/true"
    try:
        uid = sandbox_uid("probe", config)
        argv = launcher_prefix(config, uid) + bwrap_args(bwrap, config, "probe", None, {}) + [true_bin]
        proc = subprocess.run(
            argv, env={"PATH": SANDBOX_PATH}, cwd="/", capture_output=True, text=True, timeout=20
        )
    except (OSError, SandboxError, subprocess.TimeoutExpired) as exc:
        return False, f"{bwrap} failed to start: {exc}"
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
        return False, f"{bwrap} failed: {detail}"
    _probe_ok.add(bwrap)
    return True, f"{bwrap} works"
