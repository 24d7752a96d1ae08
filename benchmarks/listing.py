"""``python -m benchmarks.listing``: a filtered, sorted lead listing, first page vs deep.

The seed inserts the leads with one ``INSERT … SELECT generate_series`` statement. The
requests go through the full application (``create_app``) in-process over httpx's ASGI
transport, so the figures are the stack's own time without a network. The deep page is
fetched with the cursor of the row ``depth`` rows into the listing, built from that row
with the listing's own ``encode_cursor``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.core.auth import create_api_key
from app.core.db import Database
from app.core.ids import new_uuid
from app.leads.listing import encode_cursor
from app.main import create_app
from app.models import Lead, Workspace
from app.settings import Settings
from benchmarks.environment import (
    BenchServers,
    BenchSetupError,
    asyncpg_dsn,
    bench_servers,
)
from benchmarks.seed import prepare_schema

TARGET_RATIO = 1.5
PAGE_SIZE = 50


@dataclass(frozen=True)
class Workload:
    """One listing: its query parameters and the SQL that finds the row at a depth."""

    title: str
    params: dict[str, str]
    where: str
    order: str
    sort_column: str


WORKLOADS = (
    Workload(
        "status=working, sort=-score",
        {"status": "working", "sort": "-score"},
        "status = 'working'",
        "score DESC, id DESC",
        "score",
    ),
    Workload(
        "source=partner, sort=last_name",
        {"source": "partner", "sort": "last_name"},
        "source = 'partner'",
        "coalesce(last_name, '') ASC, id ASC",
        "last_name",
    ),
    Workload(
        "q=company 1, sort=-created_at",
        {"q": "company 1", "sort": "-created_at"},
        "search_text LIKE '%company 1%'",
        "created_at DESC, id DESC",
        "created_at",
    ),
    Workload(
        "score_min=100, sort=-created_at",
        {"score_min": "100", "sort": "-created_at"},
        "score >= 100",
        "created_at DESC, id DESC",
        "created_at",
    ),
)

# Statuses, sources and scores cycle with coprime periods, so every combination occurs.
_SEED_LEADS = """
INSERT INTO leads (
    id, workspace_id, email, email_normalized, first_name, last_name, company,
    source, status, attributes, tags, score, score_breakdown, created_at, updated_at
)
SELECT
    gen_random_uuid(), $1, 'lead' || n || '@seed.example', 'lead' || n || '@seed.example',
    'First' || (n % 5000), 'Last' || lpad(((n * 7919) % 1000003)::text, 7, '0'),
    'Company ' || (n % 20000),
    (ARRAY['web_form', 'campaign', 'partner', 'import', 'api', 'referral'])[1 + n % 6],
    (ARRAY['new', 'working', 'nurturing', 'qualified', 'disqualified'])[1 + n % 5],
    '{}'::jsonb,
    CASE WHEN n % 10 = 0 THEN ARRAY['vip'] ELSE ARRAY[]::text[] END,
    (n * 31) % 211 - 50, '[]'::jsonb,
    now() - make_interval(secs => n * 13), now() - make_interval(secs => n * 7)
FROM generate_series(1::bigint, $2::bigint) AS n
"""


@dataclass(frozen=True)
class Result:
    title: str
    first_page_ms: float
    deep_page_ms: float
    ratio: float
    depth: int
    requests: int


async def seed(database_url: str, leads: int) -> tuple[uuid.UUID, str]:
    """Create the workspace, its key and ``leads`` leads; return the workspace and key."""
    database = Database(Settings(database_url=database_url, database_pool_size=1))
    try:
        async with database.session() as session:
            workspace = Workspace(id=new_uuid(), name="Listing benchmark")
            session.add(workspace)
            await session.flush()
            created = await create_api_key(
                session, workspace_id=workspace.id, name="bench", scopes=("leads:read",)
            )
            await session.commit()
    finally:
        await database.dispose()
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.execute(_SEED_LEADS, workspace.id, leads)
        await connection.execute("ANALYZE leads")
    finally:
        await connection.close()
    return workspace.id, created.secret


async def deep_cursor(
    database_url: str, workspace_id: uuid.UUID, workload: Workload, depth: int
) -> str:
    """Return the cursor that starts the page ``depth`` rows into the listing."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        row = await connection.fetchrow(
            f"SELECT id, score, last_name, created_at, updated_at FROM leads "
            f"WHERE workspace_id = $1 AND {workload.where} "
            f"ORDER BY {workload.order} OFFSET $2 LIMIT 1",
            workspace_id,
            depth - 1,
        )
    finally:
        await connection.close()
    if row is None:
        raise BenchSetupError(
            f"{workload.title} has fewer than {depth} leads; seed more with --leads."
        )
    return encode_cursor(workload.params["sort"], Lead(**dict(row)))


async def _time(
    client: httpx.AsyncClient, headers: dict[str, str], params: dict[str, str]
) -> float:
    started = time.perf_counter()
    response = await client.get("/v1/leads", params=params, headers=headers)
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or len(response.json()["data"]) != PAGE_SIZE:
        raise BenchSetupError(f"GET /v1/leads {params} failed: {response.text[:300]}")
    return elapsed * 1000


async def measure(
    servers: BenchServers, *, leads: int, depth: int, requests: int
) -> list[Result]:
    await asyncio.to_thread(prepare_schema, servers.database_url)
    workspace_id, api_key = await seed(servers.database_url, leads)
    settings = Settings(
        database_url=servers.database_url,
        redis_url=servers.redis_url,
        log_level="WARNING",
        auth_cache_seconds=60,
    )
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {api_key}"}
    results = []
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):
        for workload in WORKLOADS:
            cursor = await deep_cursor(
                servers.database_url, workspace_id, workload, depth
            )
            first = {**workload.params, "limit": str(PAGE_SIZE)}
            deep = {**first, "cursor": cursor}
            for _ in range(3):  # warm-up: connections, plans, caches
                await _time(client, headers, first)
                await _time(client, headers, deep)
            first_ms, deep_ms = [], []
            # Alternating the two requests exposes both to the same drift.
            for _ in range(requests):
                first_ms.append(await _time(client, headers, first))
                deep_ms.append(await _time(client, headers, deep))
            first_median = statistics.median(first_ms)
            deep_median = statistics.median(deep_ms)
            results.append(
                Result(
                    title=workload.title,
                    first_page_ms=round(first_median, 2),
                    deep_page_ms=round(deep_median, 2),
                    ratio=round(deep_median / first_median, 2),
                    depth=depth,
                    requests=requests,
                )
            )
    return results


def render(results: list[Result], leads: int) -> str:
    lines = [
        f"Lead listing, {leads:,} leads, pages of {PAGE_SIZE}, medians; "
        f"target: deep / first <= {TARGET_RATIO}",
        "",
        "| listing | first page ms | page at depth ms | depth | ratio | target |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for item in results:
        met = "met" if item.ratio <= TARGET_RATIO else "missed"
        lines.append(
            f"| {item.title} | {item.first_page_ms} | {item.deep_page_ms} | "
            f"{item.depth:,} | {item.ratio} | {met} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.listing",
        description="Time the first page of filtered, sorted lead listings against a "
        "page deep into them. Uses the same database and Redis settings as "
        "python -m benchmarks; the database's schema is dropped.",
    )
    parser.add_argument("--leads", type=int, default=1_000_000, help="Leads seeded.")
    parser.add_argument(
        "--depth", type=int, default=20_000, help="Rows before the deep page."
    )
    parser.add_argument(
        "--requests", type=int, default=30, help="Timed requests per page."
    )
    parser.add_argument("--json", type=Path, help="Also write the results as JSON.")
    arguments = parser.parse_args(argv)
    try:
        with bench_servers() as servers:
            results = asyncio.run(
                measure(
                    servers,
                    leads=arguments.leads,
                    depth=arguments.depth,
                    requests=arguments.requests,
                )
            )
    except BenchSetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(render(results, arguments.leads))
    if arguments.json is not None:
        payload: list[dict[str, Any]] = [asdict(item) for item in results]
        arguments.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
