"""Relay benchmark: what the platform adds between a model's token stream and a client's websocket.

A local OpenAI-compatible server (``python -m tests.support.llm_server``, its own process) streams
``--tokens`` tokens ``--delay-ms`` apart. The same completion is consumed

- directly, with the ``openai`` client (``AsyncOpenAI``, streaming), and
- through the platform: Daphne and a django-q2 cluster as real processes on a benchmark database; each
  session's client holds a websocket, posts a message over REST with an API key, and times the
  ``stream.chunk`` events of the run,

at 1, 10 and 50 concurrent sessions (the cluster gets one worker per session, as a worker streams one
run at a time, up to ``--max-workers``: 30, since every worker and every concurrent request holds a
database connection and PostgreSQL allows 100 by default; past it, runs wait for a worker), on the two
deployments:

- ``redis``: PostgreSQL + channels-redis + django-q2's Redis broker (``BENCH_DATABASE_URL``, default
  ``postgres://postgres@127.0.0.1:5432/switchboard_bench``, dropped and created each run; ``REDIS_URL``,
  default ``redis://127.0.0.1:6379/0``);
- ``orm``: SQLite (a fresh file) + the in-memory channel layer + django-q2's ORM broker, where events
  reach Daphne through the event log (``EVENT_POLL_SECONDS``).

Reported: time to first token (request sent → first text) of both and the difference, p50 and p99;
tokens per second of each stream (tokens / (last text − first text)), median, and the ratio; the
platform's CPU time (Daphne and every cluster process, from /proc) per delivered chunk; and whether CPU
per chunk is flat in the chunk's position: the marginal CPU per chunk of replies of increasing length
(early chunks: the first segment; late chunks: the last one) should match.

    .venv/bin/python bench/relay.py [--tokens 200] [--delay-ms 10] [--sessions 1,10,50] [--modes redis,orm]

Internally it re-runs itself once per deployment (``--child MODE``), since Django's settings are per
process; the child prints its measurements as JSON and the parent prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROMPT = "Relay benchmark"


@dataclass
class Sample:
    ttft: float  # seconds, request sent -> first text
    tps: float  # tokens per second between the first and the last text
    tokens: int
    chunks: int


@dataclass
class Level:
    sessions: int
    direct: list[Sample] = field(default_factory=list)
    platform: list[Sample] = field(default_factory=list)
    cpu_seconds: float = 0.0
    daphne_cpu_seconds: float = 0.0
    chunks: int = 0


# --- processes --------------------------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [pid], [pid]
    while frontier:
        kids = [child for child, parent in parents.items() if parent == frontier[-1]]
        frontier.pop()
        found += kids
        frontier += kids
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of live processes (and of their children that exited and were waited for)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return total / CLOCK_TICKS


def start_llm_server(tokens: int, delay_ms: float) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "tests.support.llm_server", "--tokens", str(tokens)]
    command += ["--delay-ms", str(delay_ms)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
    return process, process.stdout.readline().strip()


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


# --- the direct path ---------------------------------------------------------------------------------------


async def direct_level(base_url: str, sessions: int, rounds: int) -> list[Sample]:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)

    async def one() -> Sample:
        started = time.perf_counter()
        arrivals, text = [], []
        stream = await client.chat.completions.create(
            model="test-model", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        async for chunk in stream:
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    arrivals.append(time.perf_counter())
                    text.append(choice.delta.content)
        return sample(started, arrivals, "".join(text), len(arrivals))

    await asyncio.gather(*(one() for _ in range(sessions)))  # warm-up
    samples = []
    for _ in range(rounds):
        samples += await asyncio.gather(*(one() for _ in range(sessions)))
    await client.close()
    return samples


def sample(started: float, arrivals: list[float], text: str, chunks: int) -> Sample:
    tokens = len(text.split())
    span = arrivals[-1] - arrivals[0]
    return Sample(
        ttft=arrivals[0] - started, tps=(tokens - 1) / span if span > 0 else 0.0, tokens=tokens, chunks=chunks
    )


# --- the platform path (child process) --------------------------------------------------------------------


class Platform:
    """Daphne and a queue cluster on the benchmark database; the cluster is restarted per level."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.daphne: subprocess.Popen | None = None
        self.cluster: subprocess.Popen | None = None

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 (inherited by the child)
        try:
            return subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()

    def start_daphne(self) -> None:
        import httpx

        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port)]
        self.daphne = self._spawn("daphne", [*command, "config.asgi:application"], dict(os.environ))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("Daphne did not start; see " + str(self.workdir / "daphne.log"))

    def start_cluster(self, workers: int) -> None:
        from django_q.tasks import async_task, result

        stop(self.cluster)
        env = {**os.environ, "Q_WORKERS": str(workers)}
        self.cluster = self._spawn("qcluster", [sys.executable, "manage.py", "qcluster"], env)
        if result(async_task("math.floor", 2.5, save=True), wait=120_000) != 2:  # saved: see Q_CLUSTER
            raise RuntimeError("the queue cluster ran no task; see " + str(self.workdir / "qcluster.log"))

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of Daphne, and of the cluster (all its processes)."""
        return tuple(cpu_seconds(tree(p.pid)) if p else 0.0 for p in (self.daphne, self.cluster))

    def stop(self) -> None:
        stop(self.cluster)
        stop(self.daphne)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Watcher:
    """One session's websocket: times the text of each run as it arrives."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.chunks: dict[str, list[tuple[float, str]]] = {}
        self.done: dict[str, asyncio.Event] = {}

    def event_for(self, run: str) -> asyncio.Event:
        return self.done.setdefault(run, asyncio.Event())

    async def listen(self, url: str, key: str, connected: asyncio.Event) -> None:
        from websockets.asyncio.client import connect

        async with connect(url, additional_headers={"Authorization": f"Bearer {key}"}, max_size=None) as ws:
            connected.set()
            async for text in ws:
                now = time.perf_counter()
                frame = json.loads(text)
                if frame.get("type") == "stream.chunk":
                    self.chunks.setdefault(frame["run"], []).append((now, frame["data"]["delta"]))
                elif frame.get("type") in ("run.completed", "run.failed", "run.cancelled"):
                    if frame["type"] != "run.completed":
                        print(f"run {frame['run']}: {frame['type']} {frame['data']}", file=sys.stderr)
                    self.event_for(frame["run"]).set()


async def platform_runs(api, slug: str, watchers: list[Watcher], control: str, script: list | None):
    """One message per session, all at once; a sample per run."""

    async def one(watcher: Watcher, i: int) -> Sample:
        if script is not None:
            await api.post(control, json=script)
        started = time.perf_counter()
        response = await api.post(
            f"/api/v1/orgs/{slug}/sessions/{watcher.session_id}/messages/", json={"content": f"{PROMPT} {i}"}
        )
        if response.status_code != 201:
            raise RuntimeError(f"posting a message failed: {response.status_code} {response.text}")
        run = response.json()["run"]["id"]
        await asyncio.wait_for(watcher.event_for(run).wait(), timeout=300)
        arrivals = watcher.chunks.pop(run, [])
        return sample(started, [t for t, _ in arrivals], "".join(d for _, d in arrivals), len(arrivals))

    return await asyncio.gather(*(one(w, i) for i, w in enumerate(watchers)))


async def platform_level(platform: Platform, tenant: dict, sessions: int, rounds: int, flat: list[int]):
    import httpx

    headers = {"Authorization": f"Bearer {tenant['key']}"}
    async with httpx.AsyncClient(base_url=platform.base_url, headers=headers, timeout=300) as api:
        watchers, listeners = [], []
        for _ in range(sessions):
            response = await api.post(f"/api/v1/orgs/{tenant['slug']}/sessions/", json={"agent": "bench"})
            watcher = Watcher(response.json()["id"])
            connected = asyncio.Event()
            url = f"ws://127.0.0.1:{platform.port}/ws/orgs/{tenant['slug']}/sessions/{watcher.session_id}/"
            listeners.append(asyncio.create_task(watcher.listen(url, tenant["key"], connected)))
            await connected.wait()
            watchers.append(watcher)
        level = Level(sessions)
        await platform_runs(api, tenant["slug"], watchers, tenant["control"], None)  # warm-up
        for _ in range(rounds):
            before = platform.cpu()
            samples = await platform_runs(api, tenant["slug"], watchers, tenant["control"], None)
            after = platform.cpu()
            level.cpu_seconds += sum(after) - sum(before)
            level.daphne_cpu_seconds += after[0] - before[0]
            level.chunks += sum(s.chunks for s in samples)
            level.platform += samples
        flatness = {}
        for length in flat:  # replies of growing length, one session: CPU per chunk by position
            text = " ".join(f"w{i}" for i in range(length))
            script = [{"kind": "reply", "text": text, "delay": tenant["flat_delay"]}]
            cpu, chunks = 0.0, 0
            for _ in range(2):
                before = sum(platform.cpu())
                (result,) = await platform_runs(api, tenant["slug"], watchers[:1], tenant["control"], script)
                cpu += sum(platform.cpu()) - before
                chunks += result.chunks
            flatness[length] = {"cpu": cpu / 2, "chunks": chunks / 2}
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
    return level, flatness


def seed(llm_base_url: str, flat_delay: float) -> dict:
    """An organization whose provider is the local server, an agent, and an API key."""
    from django.contrib.auth import get_user_model

    from core.api_keys import api_key_issue
    from core.models import Membership, Organization, Role
    from core.tenancy import tenant_context
    from sessions_app.models import Agent
    from sessions_app.services.catalog import provider_credential_save

    org = Organization.objects.create(name="Bench", slug=f"bench-{uuid.uuid4().hex[:8]}")
    user = get_user_model().objects.create_user(username=f"{org.slug}-owner")
    with tenant_context(org):
        Membership.objects.create(organization=org, user=user, role=Role.OWNER)
        Agent.objects.create(
            organization=org, name="Bench", slug="bench", system_prompt="", model="test-model"
        )
        provider_credential_save(
            None,
            organization=org,
            name="local",
            kind="compatible",
            base_url=llm_base_url,
            api_key="sk-bench",
            is_default=True,
            max_retries=0,
            timeout_seconds=60.0,
        )
    key = api_key_issue(organization=org, name="bench", scopes=["read", "write"], created_by=user).secret
    control = llm_base_url.rsplit("/v1", 1)[0] + "/_control/script"
    return {"slug": org.slug, "key": key, "control": control, "flat_delay": flat_delay}


def prepare_database(mode: str) -> str:
    """A fresh benchmark database; returns its description."""
    if mode == "orm":
        return "SQLite (fresh file)"
    import psycopg

    url = os.environ["DATABASE_URL"]
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"PostgreSQL ({name})"


def child(args) -> None:
    database = prepare_database(args.child)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    tenant = seed(args.llm, args.flat_delay_ms / 1000)
    platform = Platform(Path(os.environ["DATA_DIR"]))
    levels, flatness = [], {}
    try:
        platform.start_daphne()
        for sessions in args.sessions:
            platform.start_cluster(workers=min(sessions, args.max_workers))
            rounds = max(1, -(-args.samples // sessions))
            flat = args.flat if sessions == 1 else []
            level, measured = asyncio.run(platform_level(platform, tenant, sessions, rounds, flat))
            levels.append(asdict(level))
            flatness.update(measured)
    finally:
        platform.stop()
    print(json.dumps({"mode": args.child, "database": database, "levels": levels, "flatness": flatness}))


# --- the parent: both paths, both deployments, one table ----------------------------------------------------


def reachable(url: str, kind: str) -> bool:
    try:
        if kind == "redis":
            import redis

            return bool(redis.Redis.from_url(url, socket_timeout=2).ping())
        import psycopg

        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", connect_timeout=2):
            return True
    except Exception:
        return False


def run_mode(mode: str, args, llm_url: str) -> dict | None:
    workdir = Path(tempfile.mkdtemp(prefix=f"sb-bench-{mode}-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATA_DIR=str(workdir),
        PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"),
        Q_CLUSTER_NAME=f"bench-{uuid.uuid4().hex[:10]}",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    if mode == "redis":
        env["DATABASE_URL"] = os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/switchboard_bench"
        )
        env["REDIS_URL"] = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        for url, kind in ((env["DATABASE_URL"], "postgres"), (env["REDIS_URL"], "redis")):
            if not reachable(url, kind):
                print(f"[{mode}] skipped: {kind} is not reachable at {url}")
                return None
    command = [sys.executable, __file__, "--child", mode, "--llm", llm_url]
    command += ["--tokens", str(args.tokens), "--delay-ms", str(args.delay_ms)]
    command += ["--sessions", ",".join(map(str, args.sessions)), "--samples", str(args.samples)]
    command += ["--max-workers", str(args.max_workers)]
    command += ["--flat", ",".join(map(str, args.flat)), "--flat-delay-ms", str(args.flat_delay_ms)]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"[{mode}] failed:\n{done.stderr[-4000:]}")
        print(f"[{mode}] the servers' logs are in {workdir}")
        return None
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"[{mode}] measured in {time.monotonic() - started:.0f} s", flush=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


LABELS = {
    "redis": "redis: PostgreSQL, channels-redis, django-q2 Redis broker",
    "orm": "orm: SQLite, in-memory channel layer, django-q2 ORM broker",
}


def report(args, direct: dict[int, list[Sample]], results: list[dict]) -> None:
    print()
    print(
        f"Relay benchmark: {args.tokens} tokens {args.delay_ms:g} ms apart; "
        f"queue workers = sessions, at most {args.max_workers}; other settings at their defaults."
    )
    print("TTFT: request sent -> first text at the client. tok/s: per stream, first -> last text, median.")
    print("CPU: Daphne + every process of the queue cluster, per stream.chunk delivered (Daphne's share).")
    verdicts = []
    for result in results:
        print()
        print(LABELS[result["mode"]] + f" [{result['database']}]")
        print(
            f"{'sessions':>8}{'runs':>6} | {'TTFT p50 direct/platform/added':>30} | "
            f"{'TTFT p99 direct/platform/added':>30} | {'tok/s direct/platform':>21}{'ratio':>7} | "
            f"{'CPU ms/chunk':>17}"
        )
        for level in result["levels"]:
            n = level["sessions"]
            mine = [Sample(**s) for s in level["platform"]]
            theirs = direct[n]
            cells = []
            for q in (0.5, 0.99):
                d, p = pct([s.ttft for s in theirs], q) * 1000, pct([s.ttft for s in mine], q) * 1000
                cells.append(f"{d:7.1f} /{p:8.1f} /{p - d:8.1f} ms")
            tps_d = statistics.median(s.tps for s in theirs)
            tps_p = statistics.median(s.tps for s in mine)
            chunks = max(1, level["chunks"])
            total, daphne = (level[k] / chunks * 1000 for k in ("cpu_seconds", "daphne_cpu_seconds"))
            cpu = f"{total:6.2f} ({daphne:.2f})"
            short = sum(1 for s in mine if s.tokens != args.tokens)
            print(
                f"{n:>8}{len(mine):>6} | {cells[0]:>30} | {cells[1]:>30} | "
                f"{tps_d:9.1f} /{tps_p:9.1f}{tps_p / tps_d:7.3f} | {cpu:>17}"
                + (f"  ({short} replies incomplete!)" if short else "")
            )
            added = (pct([s.ttft for s in mine], 0.5) - pct([s.ttft for s in theirs], 0.5)) * 1000
            if result["mode"] == "redis":
                verdicts.append(
                    (f"added TTFT p50 <= 20 ms (redis, {n} sessions): {added:.0f} ms", added <= 20)
                )
            ratio = tps_p / tps_d
            verdicts.append(
                (f"tok/s ratio >= 0.95 ({result['mode']}, {n} sessions): {ratio:.3f}", ratio >= 0.95)
            )
        flat = {int(k): v for k, v in result["flatness"].items()}
        lengths = sorted(flat)
        if len(lengths) >= 2:
            print(f"  CPU by position (one session, tokens {args.flat_delay_ms:g} ms apart, mean of 2 runs):")
            for n in lengths:
                per = flat[n]["cpu"] / flat[n]["chunks"] * 1000
                print(f"    {n:>6} tokens: {flat[n]['chunks']:6.0f} chunks, {per:6.2f} ms/chunk")
            margins = [
                (flat[b]["cpu"] - flat[a]["cpu"]) / (flat[b]["chunks"] - flat[a]["chunks"]) * 1000
                for a, b in zip(lengths, lengths[1:], strict=False)
            ]
            ratio = margins[-1] / margins[0] if margins[0] > 0 else float("inf")
            print(
                f"    marginal CPU per chunk: early chunks {margins[0]:.2f} ms, "
                f"late chunks {margins[-1]:.2f} ms (late/early {ratio:.2f})"
            )
            verdicts.append(
                (f"CPU per chunk flat in position ({result['mode']}): {ratio:.2f}", 0.8 <= ratio <= 1.25)
            )
    print()
    print("Targets (added TTFT p50 <= 20 ms on Redis; tok/s >= 0.95 of direct; late/early CPU 0.8-1.25):")
    for name, ok in verdicts:
        print(f"  [{'met ' if ok else 'MISS'}] {name}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--delay-ms", type=float, default=10.0)
    parser.add_argument("--sessions", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 50])
    parser.add_argument("--samples", type=int, default=20, help="at least this many runs per level")
    parser.add_argument(
        "--max-workers",
        type=int,
        default=30,
        help="queue workers at most (one per session up to this): each holds a database connection, and "
        "Daphne opens one per concurrent request, within PostgreSQL's default max_connections of 100",
    )
    parser.add_argument("--modes", type=lambda s: s.split(","), default=["redis", "orm"])
    parser.add_argument(
        "--flat",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[200, 1000, 5000],
        help="reply lengths (tokens) for the CPU-by-position check",
    )
    parser.add_argument("--flat-delay-ms", type=float, default=2.0, help="token spacing in that check")
    parser.add_argument("--child", choices=["redis", "orm"], help=argparse.SUPPRESS)
    parser.add_argument("--llm", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    llm, base_url = start_llm_server(args.tokens, args.delay_ms)
    try:
        direct = {
            n: asyncio.run(direct_level(base_url, n, max(1, -(-args.samples // n)))) for n in args.sessions
        }
        print(f"[direct] measured at {args.sessions} sessions", flush=True)
        results = [r for r in (run_mode(mode, args, base_url) for mode in args.modes) if r]
    finally:
        stop(llm)
    if not results:
        print("no deployment could be measured")
        return 1
    report(args, direct, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
