"""``python -m benchmarks``: run every workload and print the tables."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from benchmarks.api import LoadFailed
from benchmarks.config import BenchConfig, positive_int
from benchmarks.conversion import ConversionFailed
from benchmarks.environment import DATABASE_URL_ENV, REDIS_URL_ENV, BenchSetupError
from benchmarks.imports import ImportFailed
from benchmarks.jobs import JobsFailed
from benchmarks.nurture import NurtureFailed
from benchmarks.report import render
from benchmarks.runner import (
    run,
    run_conversion,
    run_imports,
    run_nurture,
    run_stripe,
)
from benchmarks.servers import ServerFailed
from benchmarks.stripe_ingest import StripeIngestFailed
from benchmarks.webhooks import run_webhooks

# Events of each run of the webhook workload, and events per commit.
WEBHOOK_EVENTS = 20_000
SMOKE_WEBHOOK_EVENTS = 500
WEBHOOK_BATCH = 500
# Rounds of the webhook workload, whose medians the targets are read from.
WEBHOOK_ROUNDS = 3


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Measure the full stack against bare Starlette + asyncpg baselines. "
            f"Uses {DATABASE_URL_ENV} (a database whose name contains 'bench'; its "
            f"schema is dropped) and {REDIS_URL_ENV} (an empty Redis database; it is "
            "flushed), or embedded servers in benchmarks/.data when they are unset."
        ),
    )
    parser.add_argument(
        "--smoke", action="store_true", help="Run a few requests and jobs only."
    )
    parser.add_argument("--rounds", type=int, help="Rounds of bare and full runs.")
    parser.add_argument("--duration", type=float, help="Measured seconds of each run.")
    parser.add_argument("--warmup", type=float, help="Warm-up seconds of each run.")
    parser.add_argument(
        "--concurrency", type=int, help="Connections the load generator keeps open."
    )
    parser.add_argument("--workers", type=int, help="uvicorn worker processes.")
    parser.add_argument("--leads", type=int, help="Leads seeded in the table.")
    parser.add_argument("--jobs", type=int, help="Jobs timed per worker setting.")
    parser.add_argument(
        "--import-rows", type=int, help="Rows of the CSV import workload."
    )
    parser.add_argument(
        "--import-rounds", type=int, help="Rounds of the CSV import workload."
    )
    parser.add_argument(
        "--nurture-enrollments",
        type=int,
        help="Enrollments of the nurture workload, all due at once.",
    )
    parser.add_argument(
        "--nurture-timeout",
        type=float,
        help="Seconds each run of the nurture workload may take before it fails.",
    )
    parser.add_argument(
        "--conversion-leads",
        type=int,
        help="Leads of each run of the conversion workload, converted one by one.",
    )
    parser.add_argument(
        "--stripe-events",
        type=int,
        help="Deliveries of each run of the Stripe workload, an even number: each "
        "event is delivered twice.",
    )
    parser.add_argument(
        "--stripe-timeout",
        type=float,
        help="Seconds each run of the Stripe workload may take, applying included, "
        "before it fails.",
    )
    parser.add_argument(
        "--only-stripe",
        action="store_true",
        help="Run only the Stripe webhook workload.",
    )
    parser.add_argument(
        "--only-conversion",
        action="store_true",
        help="Run only the lead conversion workload.",
    )
    parser.add_argument(
        "--only-nurture",
        action="store_true",
        help="Run only the nurture workload.",
    )
    parser.add_argument(
        "--only-import",
        action="store_true",
        help="Run only the CSV import workload.",
    )
    parser.add_argument(
        "--only-webhooks",
        action="store_true",
        help="Run only the webhook delivery workload.",
    )
    parser.add_argument(
        "--webhook-events",
        type=int,
        help="Events of each run of the webhook workload (20,000; 500 with --smoke).",
    )
    parser.add_argument(
        "--webhook-rounds",
        type=positive_int,
        help="Rounds of the webhook workload (3; 1 with --smoke).",
    )
    parser.add_argument(
        "--webhook-concurrency",
        type=int,
        default=10,
        help="Requests in flight to the receiver, for the worker and the bare loop.",
    )
    parser.add_argument(
        "--json", type=Path, help="Also write the whole report as JSON to this file."
    )
    return parser.parse_args(argv)


def build_config(arguments: argparse.Namespace) -> BenchConfig:
    config = BenchConfig()
    if arguments.smoke:
        config = config.smoke()
    overrides = {
        "rounds": arguments.rounds,
        "duration_seconds": arguments.duration,
        "warmup_seconds": arguments.warmup,
        "concurrency": arguments.concurrency,
        "workers": arguments.workers,
        "leads": arguments.leads,
        "jobs": arguments.jobs,
        "import_rows": arguments.import_rows,
        "import_rounds": arguments.import_rounds,
        "nurture_enrollments": arguments.nurture_enrollments,
        "nurture_timeout_seconds": arguments.nurture_timeout,
        "conversion_leads": arguments.conversion_leads,
        "stripe_events": arguments.stripe_events,
        "stripe_timeout_seconds": arguments.stripe_timeout,
    }
    chosen = {name: value for name, value in overrides.items() if value is not None}
    return dataclasses.replace(config, **chosen)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    config = build_config(arguments)
    webhook_events = arguments.webhook_events or (
        SMOKE_WEBHOOK_EVENTS if arguments.smoke else WEBHOOK_EVENTS
    )
    webhook_rounds = arguments.webhook_rounds or (
        1 if arguments.smoke else WEBHOOK_ROUNDS
    )
    if arguments.only_webhooks:
        return run_webhooks(
            webhook_events,
            WEBHOOK_BATCH,
            arguments.webhook_concurrency,
            webhook_rounds,
        )
    try:
        if arguments.only_import:
            report = run_imports(config, progress=progress)
        elif arguments.only_conversion:
            report = run_conversion(config, progress=progress)
        elif arguments.only_nurture:
            report = run_nurture(config, progress=progress)
        elif arguments.only_stripe:
            report = run_stripe(config, progress=progress)
        else:
            report = run(config, progress=progress)
    except BenchSetupError as error:
        print(f"benchmark not run: {error}", file=sys.stderr)
        return 2
    except (
        LoadFailed,
        ServerFailed,
        JobsFailed,
        ImportFailed,
        NurtureFailed,
        ConversionFailed,
        StripeIngestFailed,
    ) as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    print(render(report))
    if arguments.json is not None:
        arguments.json.write_text(
            json.dumps(dataclasses.asdict(report), indent=2) + "\n"
        )
    if (
        arguments.only_import
        or arguments.only_conversion
        or arguments.only_nurture
        or arguments.only_stripe
    ):
        return 0
    print()
    return run_webhooks(
        webhook_events, WEBHOOK_BATCH, arguments.webhook_concurrency, webhook_rounds
    )


if __name__ == "__main__":
    sys.exit(main())
