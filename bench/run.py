"""Run every benchmark in bench/ (``make bench``): the relay benchmark, then the search benchmark.

Each runs as its own process with this interpreter, one after the other (they would disturb each other's
timings), with its output passed through as it comes; a script in bench/ counts as a benchmark when it can
be run (``if __name__ == "__main__"``). For a benchmark's options, run it directly
(``.venv/bin/python bench/relay.py --help``). Exits non-zero if any benchmark failed; the others still run.

    .venv/bin/python bench/run.py [relay] [search]
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ORDER = ["relay", "search"]  # known benchmarks first, in this order; any other bench/*.py after them


def benchmarks() -> list[Path]:
    scripts = {
        p.stem: p
        for p in BENCH.glob("*.py")
        if p.stem != "run" and '__name__ == "__main__"' in p.read_text(encoding="utf-8")
    }
    known = [scripts.pop(name) for name in ORDER if name in scripts]
    return known + [scripts[name] for name in sorted(scripts)]


def main(argv: list[str]) -> int:
    selected = benchmarks()
    if argv:
        unknown = set(argv) - {p.stem for p in selected}
        if unknown:
            print(f"unknown benchmark(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        selected = [p for p in selected if p.stem in argv]
    failed = []
    for script in selected:
        print(f"\n===== {script.name} =====", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(script)], cwd=BENCH.parent)
        print(f"===== {script.name}: exit {code} after {time.monotonic() - started:.0f} s =====", flush=True)
        if code != 0:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
