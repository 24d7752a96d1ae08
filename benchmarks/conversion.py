"""The conversion workload: leads converted one by one and moved through to won.

For each lead, the full stack gets ``POST /v1/leads/{id}/convert`` and then one
``POST /v1/opportunities/{id}/move`` per stage of the default pipeline after the first,
up to the won stage (four with the default pipeline), one request at a time. The
requests go through the application (``create_app``) in-process over httpx's ASGI
transport, as in ``benchmarks.listing``, so the figures are the stack's own time
without a network.

The baseline is a bare asyncpg script on one connection that runs, per lead, the same
transactions with the same inserts and updates. The conversion locks the lead, inserts
the customer, the contact, the opportunity, its first stage transition and their
events, then updates the lead and inserts ``lead.converted``. Each move locks the
opportunity, updates its stage (and its status at won), and inserts the transition and
``opportunity.stage_changed`` (and ``opportunity.won``). The script skips what the
stack reads besides: the API key, the default pipeline, nurture enrolments and webhook
subscriptions. Each transaction counts as one request.

The bare script runs before and after the full stack, and the ratio uses the median
of the two. Every run must leave each of its leads converted and its opportunity won,
or the benchmark fails.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson

from app.core import ids
from app.core.auth import ALL_SCOPES, create_api_key
from app.core.db import Database
from app.core.ids import new_uuid
from app.main import create_app
from app.models import Workspace
from app.settings import Settings
from benchmarks.environment import BenchServers, asyncpg_dsn

TITLE = "lead conversion to won"
BARE = "bare"
FULL = "full"
ACTOR = "bench"
# Leads converted through each side before the timed runs, to warm connections,
# statement caches and the application's imports; not counted.
WARMUP_LEADS = 5


class ConversionFailed(RuntimeError):
    """A request failed, or a run left a lead unconverted or an opportunity not won."""


@dataclass(frozen=True)
class ConversionRun:
    label: str
    leads: int
    requests: int
    seconds: float
    requests_per_second: float
    # CPU time of this process (client and server, or the bare script) per request.
    # It moves less than the rate when other programs load the machine.
    cpu_ms_per_request: float


@dataclass(frozen=True)
class ConversionSummary:
    """The full stack against the median of the bare runs before and after it."""

    title: str
    leads: int
    requests_per_lead: int
    bare_runs: list[ConversionRun]
    full: ConversionRun
    bare_requests_per_second: float
    ratio: float
    ratio_target: float
    # Bare CPU ms per request over full, with the median of the bare runs.
    cpu_ratio: float


@dataclass(frozen=True)
class Pipeline:
    pipeline_id: uuid.UUID
    first_stage_id: uuid.UUID
    # The stages a deal moves to after the first, ending with the won stage.
    moves: list[tuple[uuid.UUID, bool]]


_SEED_LEADS = """
INSERT INTO leads (
    id, workspace_id, email, email_normalized, first_name, last_name, company,
    source, status, attributes, tags, score, score_breakdown
)
SELECT
    gen_random_uuid(), $1,
    'buyer@' || $2 || '-' || n || '.conversion.example',
    'buyer@' || $2 || '-' || n || '.conversion.example',
    'First' || n, 'Last' || n, 'Company ' || $2 || ' ' || n,
    'api', 'qualified', '{}'::jsonb, ARRAY[]::text[], 0, '[]'::jsonb
FROM generate_series(1::bigint, $3::bigint) AS n
RETURNING id
"""

_LOCK_LEAD = "SELECT * FROM leads WHERE workspace_id = $1 AND id = $2 FOR UPDATE"
_INSERT_CUSTOMER = """
INSERT INTO customers (
    id, workspace_id, name, email, domain, currency, timezone, payment_terms_days,
    source_lead_id, version
) VALUES ($1, $2, $3, $4, $5, 'USD', 'UTC', 30, $6, 1)
RETURNING created_at, updated_at
"""
_INSERT_CONTACT = """
INSERT INTO contacts (id, workspace_id, customer_id, email, first_name, last_name, version)
VALUES ($1, $2, $3, $4, $5, $6, 1)
RETURNING created_at, updated_at
"""
_INSERT_OPPORTUNITY = """
INSERT INTO opportunities (
    id, workspace_id, name, customer_id, contact_id, lead_id, pipeline_id, stage_id,
    status, amount, currency, version
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', 0, 'USD', 1)
RETURNING created_at, updated_at
"""
_INSERT_TRANSITION = """
INSERT INTO stage_transitions (
    id, workspace_id, opportunity_id, from_stage_id, to_stage_id, at, actor,
    opportunity_version, from_status, to_status, seconds_in_previous_stage
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
"""
_UPDATE_LEAD = """
UPDATE leads SET status = 'converted', customer_id = $2, contact_id = $3,
    opportunity_id = $4, converted_at = $5, updated_at = now(), version = version + 1
WHERE id = $1 AND version = $6
"""
# The event and its place in the dispatch queue, as ``emit`` writes them.
_INSERT_EVENT = """
WITH inserted AS (
    INSERT INTO events (
        id, workspace_id, type, object_type, object_id, sequence, data, actor
    ) VALUES (
        $1, $2, $3, $4, $5,
        (SELECT coalesce(max(sequence), 0) + 1 FROM events WHERE object_id = $5),
        $6, $7
    )
    RETURNING id, created_at
),
queued AS (
    INSERT INTO undispatched_events (event_id) SELECT id FROM inserted
)
SELECT created_at FROM inserted
"""
_LOCK_OPPORTUNITY = (
    "SELECT * FROM opportunities WHERE workspace_id = $1 AND id = $2 FOR UPDATE"
)
_MOVE_OPPORTUNITY = """
UPDATE opportunities SET stage_id = $2, status = $3, won_at = $4, updated_at = now(),
    stage_entered_at = now(), last_activity_at = now(), version = version + 1
WHERE id = $1 AND version = $5
RETURNING *
"""


async def _seed_workspace(database_url: str) -> tuple[uuid.UUID, str]:
    database = Database(Settings(database_url=database_url, database_pool_size=1))
    try:
        async with database.session() as session:
            workspace = Workspace(id=new_uuid(), name="Conversion benchmark")
            session.add(workspace)
            await session.flush()
            created = await create_api_key(
                session, workspace_id=workspace.id, name="bench", scopes=ALL_SCOPES
            )
            await session.commit()
    finally:
        await database.dispose()
    return workspace.id, created.secret


async def _seed_leads(
    connection: asyncpg.Connection, workspace_id: uuid.UUID, batch: str, leads: int
) -> list[uuid.UUID]:
    rows = await connection.fetch(_SEED_LEADS, workspace_id, batch, leads)
    await connection.execute("ANALYZE leads")
    return sorted(row["id"] for row in rows)


async def _default_pipeline(
    connection: asyncpg.Connection, workspace_id: uuid.UUID
) -> Pipeline:
    rows = await connection.fetch(
        "SELECT s.id, s.pipeline_id, s.is_won, s.is_lost FROM stages s "
        "JOIN pipelines p ON p.id = s.pipeline_id "
        "WHERE p.workspace_id = $1 AND p.is_default ORDER BY s.position",
        workspace_id,
    )
    open_stages = [row for row in rows if not row["is_won"] and not row["is_lost"]]
    won = [row for row in rows if row["is_won"]]
    if not open_stages or not won:
        raise ConversionFailed("the default pipeline has no open or no won stage")
    moves = [(row["id"], False) for row in open_stages[1:]] + [(won[0]["id"], True)]
    return Pipeline(
        pipeline_id=rows[0]["pipeline_id"],
        first_stage_id=open_stages[0]["id"],
        moves=moves,
    )


def _json(row: dict[str, Any]) -> str:
    return orjson.dumps(
        {
            key: (str(value) if isinstance(value, uuid.UUID) else value)
            for key, value in row.items()
        }
    ).decode()


async def _emit(
    connection: asyncpg.Connection,
    workspace_id: uuid.UUID,
    event_type: str,
    object_type: str,
    object_id: uuid.UUID,
    data: dict[str, Any],
) -> None:
    await connection.fetchval(
        _INSERT_EVENT,
        new_uuid(),
        workspace_id,
        event_type,
        object_type,
        object_id,
        _json(data),
        ACTOR,
    )


async def _bare_convert(
    connection: asyncpg.Connection,
    workspace_id: uuid.UUID,
    pipeline: Pipeline,
    lead_id: uuid.UUID,
) -> uuid.UUID:
    async with connection.transaction():
        lead = dict(await connection.fetchrow(_LOCK_LEAD, workspace_id, lead_id))
        customer_id, contact_id, opportunity_id = new_uuid(), new_uuid(), new_uuid()
        domain = lead["email_normalized"].split("@")[1]
        customer = {
            "id": ids.encode("customer", customer_id),
            "name": lead["company"],
            "email": lead["email_normalized"],
            "domain": domain,
        }
        customer.update(
            await connection.fetchrow(
                _INSERT_CUSTOMER,
                customer_id,
                workspace_id,
                lead["company"],
                lead["email_normalized"],
                domain,
                lead_id,
            )
        )
        await _emit(
            connection,
            workspace_id,
            "customer.created",
            "customer",
            customer_id,
            customer,
        )
        contact = {
            "id": ids.encode("contact", contact_id),
            "customer_id": customer["id"],
            "email": lead["email_normalized"],
            "first_name": lead["first_name"],
            "last_name": lead["last_name"],
        }
        contact.update(
            await connection.fetchrow(
                _INSERT_CONTACT,
                contact_id,
                workspace_id,
                customer_id,
                lead["email_normalized"],
                lead["first_name"],
                lead["last_name"],
            )
        )
        await _emit(
            connection, workspace_id, "contact.created", "contact", contact_id, contact
        )
        opportunity = dict(
            await connection.fetchrow(
                _INSERT_OPPORTUNITY,
                opportunity_id,
                workspace_id,
                lead["company"],
                customer_id,
                contact_id,
                lead_id,
                pipeline.pipeline_id,
                pipeline.first_stage_id,
            )
        )
        await connection.execute(
            _INSERT_TRANSITION,
            new_uuid(),
            workspace_id,
            opportunity_id,
            None,
            pipeline.first_stage_id,
            datetime.now(UTC),
            ACTOR,
            0,
            None,
            "open",
            None,
        )
        opportunity.update(
            id=ids.encode("opportunity", opportunity_id), customer_id=customer["id"]
        )
        await _emit(
            connection,
            workspace_id,
            "opportunity.created",
            "opportunity",
            opportunity_id,
            opportunity,
        )
        status = await connection.execute(
            _UPDATE_LEAD,
            lead_id,
            customer_id,
            contact_id,
            opportunity_id,
            datetime.now(UTC),
            lead["version"],
        )
        if status != "UPDATE 1":
            raise ConversionFailed(f"bare: lead {lead_id} changed meanwhile")
        lead.update(status="converted", customer_id=customer_id)
        await _emit(connection, workspace_id, "lead.converted", "lead", lead_id, lead)
    return opportunity_id


async def _bare_move(
    connection: asyncpg.Connection,
    workspace_id: uuid.UUID,
    opportunity_id: uuid.UUID,
    stage_id: uuid.UUID,
    won: bool,
) -> None:
    async with connection.transaction():
        current = await connection.fetchrow(
            _LOCK_OPPORTUNITY, workspace_id, opportunity_id
        )
        now = datetime.now(UTC)
        moved = await connection.fetchrow(
            _MOVE_OPPORTUNITY,
            opportunity_id,
            stage_id,
            "won" if won else "open",
            now if won else None,
            current["version"],
        )
        if moved is None:
            raise ConversionFailed(f"bare: opportunity {opportunity_id} changed")
        await connection.execute(
            _INSERT_TRANSITION,
            new_uuid(),
            workspace_id,
            opportunity_id,
            current["stage_id"],
            stage_id,
            now,
            ACTOR,
            current["version"],
            current["status"],
            "won" if won else "open",
            int((now - current["stage_entered_at"]).total_seconds()),
        )
        data = dict(moved)
        data["id"] = ids.encode("opportunity", opportunity_id)
        await _emit(
            connection,
            workspace_id,
            "opportunity.stage_changed",
            "opportunity",
            opportunity_id,
            data,
        )
        if won:
            await _emit(
                connection,
                workspace_id,
                "opportunity.won",
                "opportunity",
                opportunity_id,
                data,
            )


async def _run_bare(
    connection: asyncpg.Connection,
    workspace_id: uuid.UUID,
    pipeline: Pipeline,
    lead_ids: list[uuid.UUID],
    label: str,
) -> ConversionRun:
    requests = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for lead_id in lead_ids:
        opportunity_id = await _bare_convert(
            connection, workspace_id, pipeline, lead_id
        )
        requests += 1
        for stage_id, won in pipeline.moves:
            await _bare_move(connection, workspace_id, opportunity_id, stage_id, won)
            requests += 1
    return _run(label, len(lead_ids), requests, started, cpu_started)


async def _post(
    client: httpx.AsyncClient, headers: dict[str, str], url: str, body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(url, json=body, headers=headers)
    if response.status_code != 200:
        raise ConversionFailed(
            f"POST {url} returned {response.status_code}: {response.text[:300]}"
        )
    data: dict[str, Any] = response.json()
    return data


async def _run_full(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    pipeline: Pipeline,
    lead_ids: list[uuid.UUID],
    label: str,
) -> ConversionRun:
    stages = [(ids.encode("stage", stage_id), won) for stage_id, won in pipeline.moves]
    requests = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for lead_id in lead_ids:
        converted = await _post(
            client, headers, f"/v1/leads/{ids.encode('lead', lead_id)}/convert", {}
        )
        requests += 1
        url = f"/v1/opportunities/{converted['opportunity_id']}/move"
        for stage_id, _ in stages:
            await _post(client, headers, url, {"stage_id": stage_id})
            requests += 1
    return _run(label, len(lead_ids), requests, started, cpu_started)


def _run(
    label: str, leads: int, requests: int, started: float, cpu_started: float
) -> ConversionRun:
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    return ConversionRun(
        label=label,
        leads=leads,
        requests=requests,
        seconds=round(seconds, 3),
        requests_per_second=round(requests / seconds, 1),
        cpu_ms_per_request=round(cpu_seconds * 1000 / requests, 3),
    )


async def _check_won(
    connection: asyncpg.Connection, lead_ids: list[uuid.UUID], label: str
) -> None:
    won = await connection.fetchval(
        "SELECT count(*) FROM leads l JOIN opportunities o ON o.id = l.opportunity_id "
        "WHERE l.id = ANY($1::uuid[]) AND l.status = 'converted' AND o.status = 'won'",
        lead_ids,
    )
    if won != len(lead_ids):
        raise ConversionFailed(
            f"{label}: {won} of {len(lead_ids)} leads ended converted with a won "
            "opportunity"
        )


async def measure_conversion(
    servers: BenchServers,
    *,
    leads: int,
    ratio_target: float,
    progress: Any = lambda message: None,
) -> ConversionSummary:
    """Time ``leads`` conversions through the stack against the bare script.

    The database must already have the schema; each run converts leads of its own.
    """
    workspace_id, api_key = await _seed_workspace(servers.database_url)
    headers = {"Authorization": f"Bearer {api_key}"}
    settings = Settings(
        database_url=servers.database_url,
        redis_url=servers.redis_url,
        log_level="WARNING",
        auth_cache_seconds=60,
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    connection = await asyncpg.connect(asyncpg_dsn(servers.database_url))
    try:
        batches = {
            name: await _seed_leads(connection, workspace_id, name, size)
            for name, size in (
                ("warm-bare", WARMUP_LEADS),
                ("warm-full", WARMUP_LEADS),
                ("bare-before", leads),
                ("full", leads),
                ("bare-after", leads),
            )
        }
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
        ):
            # The first request creates the workspace's default pipeline.
            listed = await client.get("/v1/pipelines", headers=headers)
            if listed.status_code != 200:
                raise ConversionFailed(f"GET /v1/pipelines: {listed.text[:300]}")
            pipeline = await _default_pipeline(connection, workspace_id)
            await _run_bare(
                connection, workspace_id, pipeline, batches["warm-bare"], "warm-up"
            )
            await _run_full(client, headers, pipeline, batches["warm-full"], "warm-up")

            progress(f"converting {leads} leads with the bare script")
            before = await _run_bare(
                connection,
                workspace_id,
                pipeline,
                batches["bare-before"],
                "bare before",
            )
            progress(f"converting {leads} leads through the API")
            full = await _run_full(client, headers, pipeline, batches["full"], FULL)
            progress(f"converting {leads} leads with the bare script again")
            after = await _run_bare(
                connection, workspace_id, pipeline, batches["bare-after"], "bare after"
            )
        for name in ("bare-before", "full", "bare-after"):
            await _check_won(connection, batches[name], name)
    finally:
        await connection.close()

    bare_rate = statistics.median(
        [before.requests_per_second, after.requests_per_second]
    )
    bare_cpu = statistics.median([before.cpu_ms_per_request, after.cpu_ms_per_request])
    return ConversionSummary(
        title=TITLE,
        leads=leads,
        requests_per_lead=1 + len(pipeline.moves),
        bare_runs=[before, after],
        full=full,
        bare_requests_per_second=round(bare_rate, 1),
        ratio=round(full.requests_per_second / bare_rate, 2),
        ratio_target=ratio_target,
        cpu_ratio=round(bare_cpu / full.cpu_ms_per_request, 2),
    )


def render_conversion(summary: ConversionSummary) -> list[str]:
    lines = [
        "",
        f"{summary.title}: {summary.leads} leads, {summary.requests_per_lead} "
        "requests each (convert, then move per stage to won), one at a time",
        f"{'run':<28}{'requests':>10}{'seconds':>10}{'req/s':>10}{'CPU ms/req':>12}",
    ]
    for run in [*summary.bare_runs, summary.full]:
        lines.append(
            f"{run.label:<28}{run.requests:>10}{run.seconds:>10.3f}"
            f"{run.requests_per_second:>10.1f}{run.cpu_ms_per_request:>12.3f}"
        )
    lines.append(
        f"{'full/bare (median bare)':<28}{summary.ratio:>29.2f}x"
        f"{summary.cpu_ratio:>11.2f}x"
    )
    return lines
