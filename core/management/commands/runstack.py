"""Run the whole stack: Daphne (HTTP and websockets) and a django-q2 cluster; Ctrl-C stops both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Start Daphne and the queue cluster together; stop both on Ctrl-C or when either exits."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))

    def handle(self, *args, host: str, port: str, **options):
        # prometheus_client's multiprocess files describe processes of an earlier run: start clean.
        metrics_dir = Path(settings.PROMETHEUS_MULTIPROC_DIR)
        for stale in metrics_dir.glob("*.db"):
            stale.unlink(missing_ok=True)
        python = sys.executable
        procs = {
            "daphne": subprocess.Popen(
                [python, "-m", "daphne", "-b", host, "-p", str(port), "config.asgi:application"]
            ),
            "qcluster": subprocess.Popen([python, "manage.py", "qcluster"]),
        }
        self.stdout.write(
            self.style.SUCCESS(f"Switchboard on http://{host}:{port}/  (admin: /admin/, API: /api/docs/)")
        )
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with {proc.returncode}; stopping the stack.")
                    exit_code = proc.returncode or 1
                    stopping = True
            time.sleep(0.2)
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        sys.exit(exit_code)
