"""Search benchmark: full-text search over one million messages against a plain ``ILIKE`` scan.

Fills a PostgreSQL database of its own (``BENCH_SEARCH_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/switchboard_search_bench``; created and migrated if missing, and kept
between runs so a re-run only measures) with one million messages of generated text: a fixed vocabulary
with Zipf-like frequencies (stop words, a few hundred common words, a long tail of rare ones) plus
recurring collocations, in 20,000 sessions of one organization and a second organization's noise. Rows
go in with ``COPY`` over two connections, with the GIN index dropped and rebuilt afterwards.

Then it times a rotating set of queries (rare words, common words, phrases, exclusions) through
``history_app.search.search_messages``, the selector behind ``GET .../search/``, and the same queries as
a plain ``ILIKE`` scan (fewer rounds: it is slow), and prints p50/p99 per kind and overall, with the
targets: p50 at most 15 ms and at least 100 times faster than the scan.

    .venv/bin/python bench/search.py [--messages 1000000] [--rounds 5] [--ilike-rounds 1] [--refill]
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import random
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/switchboard_search_bench"
ORG_SLUG = "search-bench"
NOISE_SLUG = "search-bench-noise"
SESSIONS = 20_000
NOISE_SHARE = 0.02  # of the messages, in the other organization
SEED = 20240601

STOP_WORDS = (
    "the of and to a in is it you that he was for on are with as i his they be at one have this from or "
    "had by not but what some we can out other were all there when up use your how said an each she which "
    "do their if will way about many then them would so these her him has more could go come did no my"
).split()
COMMON_WORDS = (
    "time people year way day thing man world life hand part child eye woman place work week case point "
    "government company number group problem fact account money report budget meeting customer service "
    "support ticket invoice payment order delivery product feature release version update error issue bug "
    "database server network request response query index table column record message session agent model "
    "token stream event log metric latency throughput cache queue worker task job schedule deadline project "
    "team manager engineer design review test deploy build pipeline branch commit merge change request plan "
    "strategy market revenue growth cost price contract partner vendor supplier inventory warehouse shipment "
    "travel flight hotel booking meeting agenda minutes summary draft document file folder upload download "
    "email phone call chat reply question answer idea proposal decision approval policy security password "
    "access permission role user account profile setting configuration option feature flag experiment "
    "analysis chart dashboard forecast quarter month morning evening weekend holiday office remote hybrid "
    "kitchen garden recipe dinner lunch coffee water weather rain snow summer winter spring autumn river "
    "mountain forest ocean beach island city village street house window door table chair computer laptop "
    "keyboard screen camera photo video music movie book story chapter letter language translation"
).split()
COLLOCATIONS = [
    "machine learning",
    "quarterly revenue",
    "customer support ticket",
    "pull request",
    "release notes",
    "root cause analysis",
    "service level agreement",
    "supply chain",
    "board meeting",
    "user interface",
    "data pipeline",
    "action items",
    "performance review",
    "sales forecast",
    "travel expenses",
    "security incident",
    "product roadmap",
    "load balancer",
    "unit tests",
    "press release",
]
SYLLABLES = (
    "ka ri to ne sa mo lu vi pe da zo ku fe li na ro be ti ga mu so re ha ze pi nu ta lo ve mi jo wa du "
    "ke si po fa ni bo ru te ma yo xi cha sho tri vel mar tos quen dral fin gor"
).split()


# --- configuration ------------------------------------------------------------------------------------


def database_url() -> str:
    """The benchmark's own database: never the application's, even when DATABASE_URL is set."""
    if os.environ.get("BENCH_SEARCH_DATABASE_URL"):
        return os.environ["BENCH_SEARCH_DATABASE_URL"]
    app_url = os.environ.get("DATABASE_URL", "")
    if app_url.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(app_url)
        return urlunsplit(parts._replace(path="/switchboard_search_bench"))
    return DEFAULT_URL


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


# --- data ---------------------------------------------------------------------------------------------


def synthetic_words(count: int, rng: random.Random) -> list[str]:
    words: list[str] = []
    seen = set(STOP_WORDS) | set(COMMON_WORDS)
    while len(words) < count:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3, 3, 4))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


class TextGenerator:
    """Messages of 5-90 words: stop words, then content words by Zipf rank, with collocations mixed in."""

    def __init__(self, rng: random.Random, tail: int = 60_000) -> None:
        self.rng = rng
        self.content = COMMON_WORDS + synthetic_words(tail, rng)
        weights = [1.0 / (rank**1.05) for rank in range(1, len(self.content) + 1)]
        self.cum = list(itertools.accumulate(weights))
        self.stop_cum = list(itertools.accumulate(1.0 / r for r in range(1, len(STOP_WORDS) + 1)))

    def message(self) -> str:
        rng = self.rng
        length = min(90, max(5, int(rng.lognormvariate(3.3, 0.6))))
        n_stop = int(length * 0.4)
        words = rng.choices(self.content, cum_weights=self.cum, k=length - n_stop)
        words += rng.choices(STOP_WORDS, cum_weights=self.stop_cum, k=n_stop)
        rng.shuffle(words)
        if rng.random() < 0.15:
            words.insert(rng.randrange(len(words) + 1), rng.choice(COLLOCATIONS))
        text = " ".join(words)
        return text[0].upper() + text[1:] + rng.choice((".", ".", ".", "?", "!"))


def copy_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def fill(url: str, total: int) -> None:
    """Write ``total`` messages (and their sessions) with COPY, the GIN index rebuilt at the end."""
    import psycopg
    from django.db import connection

    from core.models import Organization
    from history_app.search import schema
    from sessions_app.models import Agent, Message, Session

    print(f"filling {total:,} messages ...", flush=True)
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE sessions_app_message, sessions_app_session CASCADE")
    orgs = []
    for slug in (ORG_SLUG, NOISE_SLUG):
        org, _ = Organization.objects.get_or_create(slug=slug, defaults={"name": slug})
        agent = Agent.all_tenants_unsafe.filter(organization=org, slug="bench").first()
        if agent is None:
            agent = Agent.all_tenants_unsafe.create(organization=org, name="Bench", slug="bench")
        orgs.append((org, agent))
    noise_sessions = max(1, int(SESSIONS * NOISE_SHARE))
    now = datetime.now(UTC)
    sessions: list[tuple[str, int]] = []  # (id, organization id)
    session_rows = io.StringIO()
    for i in range(SESSIONS + noise_sessions):
        org, agent = orgs[0] if i < SESSIONS else orgs[1]
        sid = str(uuid.uuid4())
        sessions.append((sid, org.pk))
        when = (now - timedelta(minutes=SESSIONS + noise_sessions - i)).isoformat()
        session_rows.write(
            "\t".join(
                [
                    sid,
                    f"Bench session {i}",
                    str(agent.pk),
                    "active",
                    "",
                    "idle",
                    "{}",
                    "{}",
                    "0",
                    "0",
                    when,
                    when,
                    when,
                    str(org.pk),
                ]
            )
            + "\n"
        )
    session_columns = (
        "id, name, agent_id, status, ended_reason, runtime_state, config, metadata, last_event_seq, "
        "last_message_seq, last_activity_at, created_at, updated_at, organization_id"
    )
    with psycopg.connect(url) as conn:
        with conn.cursor().copy(f"COPY {Session._meta.db_table} ({session_columns}) FROM STDIN") as copy:
            copy.write(session_rows.getvalue())
        conn.execute(f"DROP INDEX IF EXISTS {schema.PG_INDEX}")
        conn.commit()

    per_session = total // len(sessions)
    extra = total - per_session * len(sessions)
    message_columns = (
        "id, session_id, seq, role, content, status, prompt_tokens, completion_tokens, metadata, created_at, "
        "updated_at, organization_id"
    )
    errors: list[BaseException] = []

    def writer(part: int, parts: int) -> None:
        try:
            rng = random.Random(SEED + part)
            generator = TextGenerator(random.Random(SEED))  # same vocabulary in every part
            generator.rng = rng
            with psycopg.connect(url) as conn, conn.cursor() as cursor:
                with cursor.copy(f"COPY {Message._meta.db_table} ({message_columns}) FROM STDIN") as copy:
                    for index in range(part, len(sessions), parts):
                        sid, org_id = sessions[index]
                        count = per_session + (1 if index < extra else 0)
                        buffer = io.StringIO()
                        base = now - timedelta(minutes=len(sessions) - index)
                        for seq in range(1, count + 1):
                            when = (base + timedelta(seconds=seq)).isoformat()
                            buffer.write(
                                f"{uuid.uuid4()}\t{sid}\t{seq}\t{'user' if seq % 2 else 'assistant'}\t"
                                f"{copy_escape(generator.message())}\tcomplete\t0\t0\t{{}}\t{when}\t{when}\t{org_id}\n"
                            )
                        copy.write(buffer.getvalue())
                conn.commit()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(part, 2)) for part in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    print(f"  rows written in {time.monotonic() - started:.0f} s; building the GIN index ...", flush=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute(
            f"UPDATE {Session._meta.db_table} s SET last_message_seq = m.n, last_event_seq = 0 "
            f"FROM (SELECT session_id, max(seq) AS n FROM {Message._meta.db_table} GROUP BY session_id) m "
            "WHERE m.session_id = s.id"
        )
        for sql in schema.PG_INSTALL:
            conn.execute(sql)
        conn.execute(f"VACUUM ANALYZE {Message._meta.db_table}")
        conn.execute(f"VACUUM ANALYZE {Session._meta.db_table}")
    print(f"  filled in {time.monotonic() - started:.0f} s", flush=True)


def message_count(org) -> int:
    from sessions_app.models import Message

    return Message.all_tenants_unsafe.filter(organization=org).count()


# --- queries ------------------------------------------------------------------------------------------


def query_set() -> dict[str, list[str]]:
    """At least 40 queries in four kinds; the same every run (the vocabulary is seeded)."""
    generator = TextGenerator(random.Random(SEED))
    content = generator.content
    rng = random.Random(SEED + 99)
    rare = [content[i] for i in rng.sample(range(3_000, 30_000), 14)]
    common = [content[i] for i in rng.sample(range(0, 60), 12)]
    phrases = [f'"{c}"' for c in COLLOCATIONS[:8]] + [
        f'"{content[i]} {content[j]}"'
        for i, j in zip(rng.sample(range(0, 40), 4), rng.sample(range(0, 40), 4), strict=True)
    ]
    exclusions = [
        f"{content[i]} -{content[j]}"
        for i, j in zip(rng.sample(range(0, 80), 6), rng.sample(range(0, 80), 6), strict=True)
    ] + [f'{content[i]} -"{c}"' for i, c in zip(rng.sample(range(0, 80), 4), COLLOCATIONS[8:12], strict=True)]
    mixed = [
        f"{content[i]} {content[j]}"
        for i, j in zip(rng.sample(range(20, 200), 6), rng.sample(range(200, 1500), 6), strict=True)
    ]
    return {
        "rare word": rare,
        "common word": common,
        "phrase": phrases,
        "exclusion": exclusions,
        "two words": mixed,
    }


def ilike_sql(query) -> tuple[str, list]:
    """The same query as a plain scan: every term as a substring, newest first."""
    where, params = ["organization_id = %s", "status <> 'streaming'"], []
    for term in query.terms:
        pattern = "%" + " ".join(term.words).replace("%", r"\%").replace("_", r"\_") + "%"
        where.append("content NOT ILIKE %s" if term.excluded else "content ILIKE %s")
        params.append(pattern)
    sql = (
        "SELECT id, session_id, content FROM sessions_app_message WHERE "
        + " AND ".join(where)
        + " ORDER BY created_at DESC, id DESC LIMIT 21"
    )
    return sql, params


def percentile(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    rank = max(1, -(-percent * len(ordered) // 100))
    return ordered[rank - 1]


def measure(
    org, queries: dict[str, list[str]], rounds: int, ilike_rounds: int
) -> dict[str, dict[str, list[float]]]:
    from django.db import connection

    from core.tenancy import tenant_context
    from history_app.search import parse_query, search_messages

    timings: dict[str, dict[str, list[float]]] = {
        kind: {"fts": [], "ilike": [], "hits": [], "approximate": []} for kind in queries
    }
    parsed = {q: parse_query(q) for qs in queries.values() for q in qs}
    with tenant_context(org):
        for q in parsed:  # warm the buffers and the plan cache once
            search_messages(parsed[q], organization=org, limit=20)
        for _ in range(rounds):
            for kind, qs in queries.items():
                for q in qs:
                    start = time.perf_counter()
                    page = search_messages(parsed[q], organization=org, limit=20)
                    timings[kind]["fts"].append((time.perf_counter() - start) * 1000)
                    timings[kind]["hits"].append(len(page.hits))
                    timings[kind]["approximate"].append(page.approximate)
        with connection.cursor() as cursor:
            for _ in range(ilike_rounds):
                for kind, qs in queries.items():
                    for q in qs:
                        sql, params = ilike_sql(parsed[q])
                        start = time.perf_counter()
                        cursor.execute(sql, [org.pk, *params])
                        cursor.fetchall()
                        timings[kind]["ilike"].append((time.perf_counter() - start) * 1000)
    return timings


def report(timings: dict[str, dict[str, list[float]]], queries: dict[str, list[str]], total: int) -> bool:
    print()
    print(f"search latency over {total:,} messages ({sum(len(q) for q in queries.values())} queries)")
    header = (
        f"{'kind':<12} {'queries':>7} {'FTS p50':>9} {'FTS p99':>9} {'ILIKE p50':>10} {'ILIKE p99':>10} "
        f"{'speed-up':>9} {'broad':>6}"
    )
    print(header)
    print("-" * len(header))
    all_fts, all_ilike = [], []
    for kind, values in timings.items():
        all_fts += values["fts"]
        all_ilike += values["ilike"]
        fts50, ilike50 = statistics.median(values["fts"]), statistics.median(values["ilike"])
        print(
            f"{kind:<12} {len(queries[kind]):>7} {fts50:>7.2f}ms {percentile(values['fts'], 99):>7.2f}ms "
            f"{ilike50:>8.1f}ms {percentile(values['ilike'], 99):>8.1f}ms {ilike50 / fts50:>8.0f}x "
            f"{sum(values['approximate'][: len(queries[kind])]):>6}"
        )
    fts50, ilike50 = statistics.median(all_fts), statistics.median(all_ilike)
    print("-" * len(header))
    count = sum(len(q) for q in queries.values())
    print(
        f"{'all':<12} {count:>7} {fts50:>7.2f}ms {percentile(all_fts, 99):>7.2f}ms "
        f"{ilike50:>8.1f}ms {percentile(all_ilike, 99):>8.1f}ms {ilike50 / fts50:>8.0f}x"
    )
    ok_latency, ok_speedup = fts50 <= 15.0, ilike50 / fts50 >= 100
    print()
    print("broad: queries with more matches than SEARCH_RANK_CANDIDATES, ranked over that many (approximate)")
    print(f"target p50 <= 15 ms: {'met' if ok_latency else 'MISSED'} ({fts50:.2f} ms)")
    print(
        f"target >= 100x the ILIKE scan (p50): {'met' if ok_speedup else 'MISSED'} ({ilike50 / fts50:.0f}x)"
    )
    return ok_latency and ok_speedup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every query through the selector")
    parser.add_argument("--ilike-rounds", type=int, default=1, help="rounds of the ILIKE scan")
    parser.add_argument("--refill", action="store_true", help="refill even if the database has the rows")
    args = parser.parse_args()

    url = database_url()
    ensure_database(url)
    setup_django(url)
    from core.models import Organization

    org = Organization.objects.filter(slug=ORG_SLUG).first()
    expected = args.messages - int(args.messages * NOISE_SHARE / (1 + NOISE_SHARE)) - 1
    if args.refill or org is None or message_count(org) < expected * 0.99:
        fill(url, args.messages)
        org = Organization.objects.get(slug=ORG_SLUG)
    else:
        print(f"reusing {message_count(org):,} messages in {urlsplit(url).path.lstrip('/')}")
    from sessions_app.models import Message

    total = Message.all_tenants_unsafe.count()
    queries = query_set()
    timings = measure(org, queries, args.rounds, args.ilike_rounds)
    report(timings, queries, total)
    empty = [
        q
        for kind, qs in queries.items()
        for q, hits in zip(qs, timings[kind]["hits"], strict=False)
        if not hits
    ]
    if empty:
        print(f"queries without results: {', '.join(empty)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
