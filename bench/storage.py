"""Benchmark: the PostgreSQL storage layer, against a throw-away embedded server.

    python bench/storage.py [--events 100000] [--batch 500] [--writers 8] [--gets 5000]
                            [--workflows 200] [--concurrency 10] [--rounds 5] [--profile]

(a) Event-log append throughput: realistic events (execution_started, then per node
    node_started, short node_token texts and node_completed with a small output and usage)
    appended with `executions.append_events`, one transaction per batch (`database.tenant`),
    by one writer (one execution, sequential batches) and by `--writers` concurrent writers (one
    execution and one pooled connection each), at batch sizes 1, 50 and `--batch`. Batch 1 shows
    the cost of one transaction per event (it appends `--single-events` events, not `--events`).
    Aim: >= 20,000 events/s, judged on the best concurrent batched figure.
(b) get-workflow latency: `--workflows` workflows stored with the support-triage example spec,
    then `--gets` `workflows.get` calls at random ids, each in its own `database.tenant`
    transaction (what a request does: acquire, BEGIN, set the tenant, SELECT, COMMIT),
    sequentially (p50/p99/max), and from `--concurrency` tasks at once (p50/p99, requests/s).

Throughput is the median over `--rounds` timed rounds after a warm-up round; latencies are taken
after a warm-up of 500 gets. The server runs with its default settings (fsync and synchronous
commit on), printed first; it and its data directory are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import random
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from agentflow_grpc.devstack.postgres import EmbeddedPostgres, create_database
from agentflow_grpc.model.events import (
    EventType,
    ExecutionEvent,
    NodeEvent,
    TokenUsage,
    node_completed,
    node_started,
    node_token,
)
from agentflow_grpc.observability.logging import configure_logging
from agentflow_grpc.spec import parse_spec
from agentflow_grpc.storage import executions, migrations, tenants, workflows
from agentflow_grpc.storage.database import Database

APPEND_AIM = 20_000  # events/s, the best concurrent batched figure
ACTOR = "operator:bench"
SPEC_PATH = Path(__file__).resolve().parents[1] / "examples" / "support-triage.json"
TOKENS_PER_NODE = 6  # a node reports: started, 6 tokens, completed
WORDS = ("The", " ticket", " concerns", " a", " billing", " refund", " request", " for", " May.")
GET_WARMUP = 500


# --- events --------------------------------------------------------------------------------


def node_events(index: int) -> list[NodeEvent]:
    """What one llm node reports: started, a few short tokens, completed with output and usage."""
    node_id = f"node_{index % 12}"
    tokens = [
        node_token(node_id, 1, WORDS[(index + i) % len(WORDS)]) for i in range(TOKENS_PER_NODE)
    ]
    output = {"text": "".join(WORDS), "category": "billing", "confidence": 0.92}
    usage = TokenUsage(412, 57, 469)
    return [
        node_started(node_id, 1, "llm"),
        *tokens,
        node_completed(node_id, 1, output, 812.345, usage),
    ]


def event_log(execution_id: uuid.UUID, count: int) -> list[ExecutionEvent]:
    """`count` events of one execution, sequences 1..count, as the engine numbers them."""
    start = datetime.now(UTC)
    events = [
        ExecutionEvent(
            str(execution_id),
            1,
            start,
            EventType.EXECUTION_STARTED,
            data={
                "workflow": "bench",
                "spec_hash": "bench",
                "inputs": {"subject": "Refund", "body": "Please refund my May invoice."},
                "node_count": 12,
            },
        )
    ]
    index = 0
    while len(events) < count:
        for node in node_events(index):
            sequence = len(events) + 1
            events.append(
                ExecutionEvent(
                    str(execution_id),
                    sequence,
                    start + timedelta(microseconds=sequence),
                    node.type,
                    node.node_id,
                    node.attempt,
                    node.data,
                )
            )
        index += 1
    return events[:count]


def batches(events: list[ExecutionEvent], size: int) -> list[list[ExecutionEvent]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


# --- setup ---------------------------------------------------------------------------------


async def server_settings(dsn: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY ($1) ORDER BY name",
            ["fsync", "synchronous_commit", "shared_buffers", "wal_level", "max_wal_size"],
        )
        version = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    settings = ", ".join(f"{r['name']}={r['setting']}{r['unit'] or ''}" for r in rows)
    return f"PostgreSQL {version}; {settings}"


async def new_executions(database: Database, tenant_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    async with database.tenant(tenant_id) as connection:
        created = [
            await executions.create(
                connection,
                tenant_id,
                spec_hash="bench",
                inputs={},
                actor=ACTOR,
                inline_spec={"name": "bench"},
            )
            for _ in range(count)
        ]
    return [execution.id for execution in created]


# --- measuring -----------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    measured: str
    aim: str
    passed: bool | None  # None: informative only

    @property
    def verdict(self) -> str:
        return "-" if self.passed is None else ("PASS" if self.passed else "MISS")


async def append_all(
    database: Database,
    tenant_id: uuid.UUID,
    execution_id: uuid.UUID,
    work: list[list[ExecutionEvent]],
) -> None:
    for batch in work:
        async with database.tenant(tenant_id) as connection:
            await executions.append_events(connection, tenant_id, execution_id, batch)


async def append_rate(
    database: Database,
    tenant_id: uuid.UUID,
    *,
    writers: int,
    batch: int,
    total: int,
    rounds: int,
) -> tuple[float, float, float, float]:
    """Events/s appended by `writers` concurrent writers: median, min and max over `rounds`
    timed rounds of `total` / `rounds` events each, after one warm-up round; and the client's
    CPU time per event (this process: building arguments, asyncpg encoding, the event loop)."""
    per_round = max(1, total // rounds // writers)
    warmup = min(per_round, 10 * batch)
    ids = await new_executions(database, tenant_id, writers)
    logs = [event_log(i, warmup + rounds * per_round) for i in ids]
    plans = [batches(log[:warmup], batch) for log in logs]
    for r in range(rounds):
        first = warmup + r * per_round
        plans.extend(batches(log[first : first + per_round], batch) for log in logs)

    async def round_of(index: int) -> tuple[float, float]:
        work = plans[index * writers : (index + 1) * writers]
        count = sum(len(b) for w in work for b in w)
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(
            *(append_all(database, tenant_id, i, w) for i, w in zip(ids, work, strict=True))
        )
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        return count / elapsed, cpu / count

    await round_of(0)  # warm-up: connections, prepared statements, the first pages
    timed = [await round_of(r + 1) for r in range(rounds)]
    rates = [rate for rate, _ in timed]
    async with database.tenant(tenant_id) as connection:
        for i in ids:  # the log is whole: consecutive and complete
            stored = await executions.get(connection, tenant_id, i)
            if stored.last_sequence != len(logs[0]):
                raise RuntimeError(f"execution {i} stored {stored.last_sequence} events")
    client = statistics.median(cpu for _, cpu in timed)
    return statistics.median(rates), min(rates), max(rates), client


async def appends(
    args: argparse.Namespace, database: Database, tenant_id: uuid.UUID
) -> dict[tuple[int, int], float]:
    """Events/s by (batch size, writers)."""
    sizes = sorted({1, 50, args.batch})
    print(
        f"(a) event-log append, one transaction per batch; events/s, median of {args.rounds} "
        f"rounds after warm-up\n    ({args.events} events per batched run, "
        f"{args.single_events} at batch 1; {TOKENS_PER_NODE + 2} events per node: started, "
        f"{TOKENS_PER_NODE} tokens, completed)"
    )
    print(
        f"  {'batch':>6}{'writers':>9}{'events/s':>11}{'min':>9}{'max':>9}{'per batch':>12}"
        f"{'client CPU':>12}"
    )
    results: dict[tuple[int, int], float] = {}
    for size in sizes:
        for writers in sorted({1, args.writers}):
            total = args.single_events if size == 1 else args.events
            median, low, high, client = await append_rate(
                database, tenant_id, writers=writers, batch=size, total=total, rounds=args.rounds
            )
            results[size, writers] = median
            per_batch = size * writers / median * 1000
            print(
                f"  {size:>6}{writers:>9}{median:>11,.0f}{low:>9,.0f}{high:>9,.0f}"
                f"{per_batch:>9.2f} ms{client * 1e6:>7.1f} µs/ev"
            )
    print(
        "  per batch = wall time of one append transaction as a writer sees it (acquire, BEGIN,\n"
        "  set tenant, the append statement, COMMIT). client CPU = this process's CPU time per\n"
        "  event (arguments, asyncpg's encoding, the event loop); the server runs beside it"
    )
    return results


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    return values[min(len(values) - 1, max(0, round(share * len(values)) - 1))]


async def gets(args: argparse.Namespace, database: Database, tenant_id: uuid.UUID) -> list[Row]:
    document = json.loads(SPEC_PATH.read_text())
    spec_hash = parse_spec(document).content_hash
    ids: list[uuid.UUID] = []
    for chunk in range(0, args.workflows, 50):
        async with database.tenant(tenant_id) as connection:
            for n in range(chunk, min(chunk + 50, args.workflows)):
                workflow = await workflows.create(
                    connection,
                    tenant_id,
                    name=f"support-triage-{n}",
                    spec=document,
                    spec_hash=spec_hash,
                    actor=ACTOR,
                )
                ids.append(workflow.id)
    chooser = random.Random(7)

    async def get_one() -> float:
        workflow_id = chooser.choice(ids)
        started = time.perf_counter()
        async with database.tenant(tenant_id) as connection:
            workflow = await workflows.get(connection, tenant_id, workflow_id)
        elapsed = time.perf_counter() - started
        if workflow.spec_hash != spec_hash:
            raise RuntimeError(f"workflow {workflow_id} came back with another spec")
        return elapsed * 1000

    async def worker(count: int) -> list[float]:
        return [await get_one() for _ in range(count)]

    size = len(SPEC_PATH.read_bytes())
    print(
        f"\n(b) get-workflow, {args.workflows} workflows ({SPEC_PATH.name}, {size:,} bytes of "
        f"spec), random ids,\n    each get in its own tenant transaction; ms, after "
        f"{GET_WARMUP} warm-up gets"
    )
    await worker(GET_WARMUP)
    sequential = sorted(await worker(args.gets))
    p50, p99 = percentile(sequential, 0.50), percentile(sequential, 0.99)
    print(
        f"  sequential      {args.gets} gets: p50 {p50:.3f}  p99 {p99:.3f}  "
        f"max {sequential[-1]:.3f}  ({args.gets / (sum(sequential) / 1000):,.0f} requests/s)"
    )
    rows = [
        Row("(b) get-workflow, sequential: p50", f"{p50:.3f} ms", "info", None),
        Row(
            "(b) get-workflow, sequential: p99 (max)",
            f"{p99:.3f} ms ({sequential[-1]:.2f})",
            "info",
            None,
        ),
    ]
    tasks = args.concurrency
    await asyncio.gather(*(worker(GET_WARMUP // tasks) for _ in range(tasks)))
    started = time.perf_counter()
    per_task = await asyncio.gather(*(worker(args.gets // tasks) for _ in range(tasks)))
    wall = time.perf_counter() - started
    together = sorted(t for times in per_task for t in times)
    c50, c99 = percentile(together, 0.50), percentile(together, 0.99)
    rate = len(together) / wall
    print(
        f"  {tasks} at once     {len(together)} gets: p50 {c50:.3f}  p99 {c99:.3f}  "
        f"max {together[-1]:.3f}  ({rate:,.0f} requests/s)"
    )
    rows += [
        Row(
            f"(b) get-workflow, {tasks} concurrent: p50 / p99",
            f"{c50:.2f} / {c99:.2f} ms",
            "info",
            None,
        ),
        Row(
            f"(b) get-workflow, {tasks} concurrent: throughput",
            f"{rate:,.0f} requests/s",
            "info",
            None,
        ),
    ]
    return rows


async def profile_appends(database: Database, tenant_id: uuid.UUID, batch: int) -> None:
    """Where the client's time goes: cProfile over one writer appending 20 batches."""
    (execution_id,) = await new_executions(database, tenant_id, 1)
    work = batches(event_log(execution_id, 25 * batch), batch)
    await append_all(database, tenant_id, execution_id, work[:5])
    profiler = cProfile.Profile()
    profiler.enable()
    await append_all(database, tenant_id, execution_id, work[5:])
    profiler.disable()
    print(f"\nprofile: one writer, 20 batches of {batch}, by internal time")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


async def main_async(args: argparse.Namespace) -> list[Row]:
    configure_logging("WARNING")  # not the embedded server's start and stop lines
    with (
        tempfile.TemporaryDirectory(prefix="agentflow-bench-") as home,
        EmbeddedPostgres(Path(home), delete=True) as dsn,
    ):
        database_dsn = await create_database(dsn, "bench")
        await migrations.upgrade(database_dsn)
        print(await server_settings(database_dsn))
        pool_size = max(args.writers, args.concurrency) + 1
        database = await Database.connect(database_dsn, min_size=pool_size, max_size=pool_size)
        try:
            async with database.system() as connection:
                tenant = await tenants.create_tenant(connection, "bench", actor=ACTOR)
            if args.profile:
                await profile_appends(database, tenant.id, args.batch)
            rates = await appends(args, database, tenant.id)
            rows = [
                Row(
                    f"(a) append, batch {size}, {writers} writer{'s' if writers > 1 else ''}",
                    f"{rate:,.0f} events/s",
                    "info",
                    None,
                )
                for (size, writers), rate in rates.items()
            ]
            judged = {k: v for k, v in rates.items() if k[0] > 1 and k[1] == args.writers}
            (size, writers), best = max((judged or rates).items(), key=lambda item: item[1])
            rows.append(
                Row(
                    f"(a) append, best concurrent batched (batch {size}, {writers} writers)",
                    f"{best:,.0f} events/s",
                    f">= {APPEND_AIM:,} events/s",
                    best >= APPEND_AIM,
                )
            )
            rows += await gets(args, database, tenant.id)
        finally:
            await database.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per batched run")
    parser.add_argument("--single-events", type=int, default=2_000, help="events at batch 1")
    parser.add_argument("--batch", type=int, default=500, help="the largest batch size")
    parser.add_argument("--writers", type=int, default=8, help="concurrent writers")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per append run")
    parser.add_argument("--workflows", type=int, default=200, help="workflows stored for (b)")
    parser.add_argument("--gets", type=int, default=5_000, help="get-workflow calls per run")
    parser.add_argument("--concurrency", type=int, default=10, help="concurrent getters")
    parser.add_argument(
        "--profile", action="store_true", help="first print a cProfile of batched appends"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    rows = asyncio.run(main_async(args))
    width = max(len(row.figure) for row in rows) + 2
    measured = max(len(row.measured) for row in rows) + 2
    aim = max(len(row.aim) for row in rows) + 2
    print(f"\n{'figure':<{width}}{'measured':<{measured}}{'aim':<{aim}}result")
    for row in rows:
        print(f"{row.figure:<{width}}{row.measured:<{measured}}{row.aim:<{aim}}{row.verdict}")
    print("the aim applies to the best concurrent batched figure; the others show the trade-off")
    print(f"(benchmark took {time.perf_counter() - started:.1f} s, server start included)")


if __name__ == "__main__":
    main()
