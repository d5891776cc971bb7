"""Persistent Python REPL run inside the sandbox (passed to ``python3 -u -c``).

Protocol (see drivers.py): requests on stdin are ``<token> <nbytes>\\n`` followed by
``nbytes`` of UTF-8 source. Output goes to stdout/stderr (merged by the host) followed by
``\\n__SB_END_<token>__ <status>\\n``. Status: 0 ok, 1 exception, 130 interrupted,
SystemExit's code otherwise. All chunks run in one persistent ``__main__`` namespace.
"""

import ast
import builtins
import linecache
import os
import signal
import sys
import traceback
import types


def _sb_main():
    # Keep the protocol stream private: user code and its subprocesses get /dev/null as
    # stdin, so a stray input() or `cat` cannot swallow the next request.
    proto = os.fdopen(os.dup(0), "rb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdin = open(0, encoding="utf-8", closefd=False)

    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    user_ns = main.__dict__
    my_pid = os.getpid()
    state = {"running": False, "cell": 0}

    def on_sigint(signum, frame):
        # Only interrupt user code; a late SIGINT while we write the end marker is dropped.
        if state["running"]:
            state["running"] = False  # one interrupt per execution: never hits the loop below
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    # Exceeding RLIMIT_FSIZE should raise OSError(EFBIG), not kill the whole session.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def read_exact(n):
        buf = b""
        while len(buf) < n:
            chunk = proto.read(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def read_line():
        line = b""
        while not line.endswith(b"\n"):
            ch = proto.read(1)
            if not ch:
                return None
            line += ch
        return line

    def show_error(exc, skip_frames):
        tb = exc.__traceback__
        for _ in range(skip_frames):
            tb = tb.tb_next if tb is not None else None
        traceback.print_exception(type(exc), exc, tb)

    def run(source):
        state["cell"] += 1
        filename = f"<cell-{state['cell']}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            state["running"] = True
            try:
                tree = ast.parse(source, filename, "exec")
                last = None
                if tree.body and isinstance(tree.body[-1], ast.Expr):
                    last = ast.Expression(tree.body.pop().value)
                exec(compile(tree, filename, "exec"), user_ns)
                if last is not None:
                    value = eval(compile(last, filename, "eval"), user_ns)
                    sys.displayhook(value)
            finally:
                state["running"] = False
            return 0
        except KeyboardInterrupt:
            print("KeyboardInterrupt", file=sys.stderr)
            return 130
        except SystemExit as exc:
            code = exc.code
            if code is None:
                return 0
            if isinstance(code, int):
                return code
            print(code, file=sys.stderr)
            return 1
        except SyntaxError as exc:
            traceback.print_exception(type(exc), exc, None)
            return 1
        except BaseException as exc:
            show_error(exc, skip_frames=1)
            return 1

    sys.stdout.write(f"__SB_READY__ {my_pid}\n")
    sys.stdout.flush()
    while True:
        header = read_line()
        if header is None:
            return
        token, size = header.decode().split()
        payload = read_exact(int(size))
        if payload is None:
            return
        status = run(payload.decode("utf-8", "replace"))
        if os.getpid() != my_pid:
            # A child forked by user code returned here: it must not act as a second REPL.
            os._exit(status & 0xFF)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os.write(1, f"\n__SB_END_{token}__ {status}\n".encode())


_sb_main()
