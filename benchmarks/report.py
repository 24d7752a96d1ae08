"""Summaries of a run: medians over rounds, ratios of full to bare, and the targets."""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks.api import BARE, FULL, Measurement, Workload
from benchmarks.config import BenchConfig
from benchmarks.conversion import ConversionSummary, render_conversion
from benchmarks.imports import ImportSummary, render_import
from benchmarks.jobs import JobLatency
from benchmarks.nurture import TITLE as TITLE_NURTURE
from benchmarks.nurture import NurtureSummary, render_nurture
from benchmarks.stripe_ingest import TITLE as TITLE_STRIPE
from benchmarks.stripe_ingest import StripeSummary, render_stripe


@dataclass(frozen=True)
class Machine:
    """The hardware and software a run measured on."""

    cpus: int
    cpu_model: str
    memory_gib: float
    python: str
    postgres: str

    @classmethod
    def detect(cls, postgres: str) -> Machine:
        return cls(
            cpus=os.cpu_count() or 0,
            cpu_model=cpu_model(),
            memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
            python=platform.python_version(),
            postgres=postgres,
        )


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown"
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == "model name":
            return value.strip()
    return "unknown"


@dataclass(frozen=True)
class ServerSummary:
    """One server on one workload: medians over rounds, and the peak memory seen."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    peak_rss_mb: float
    cpu_ms_per_request: float
    requests: int


@dataclass(frozen=True)
class WorkloadSummary:
    """Both servers on one workload, and the median of the per-round ratios.

    ``ratio`` divides the full stack's requests per second by the bare app's.
    ``cpu_ratio`` divides the bare app's CPU time per request by the full stack's, so
    that both read alike, with 1.0 meaning as cheap as bare.
    """

    title: str
    bare: ServerSummary
    full: ServerSummary
    ratio: float
    cpu_ratio: float
    ratio_target: float


@dataclass(frozen=True)
class Check:
    """One target: the measured figure, the bound, and whether it was met."""

    name: str
    measured: str
    target: str
    met: bool


@dataclass
class Report:
    """Everything one run produced."""

    config: BenchConfig
    machine: Machine
    workloads: list[WorkloadSummary] = field(default_factory=list)
    jobs: list[JobLatency] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    imports: ImportSummary | None = None
    nurture: NurtureSummary | None = None
    conversion: ConversionSummary | None = None
    stripe: StripeSummary | None = None


def summarize_server(measurements: list[Measurement]) -> ServerSummary:
    return ServerSummary(
        requests_per_second=round(
            statistics.median(item.load.requests_per_second for item in measurements),
            1,
        ),
        p50_ms=round(statistics.median(item.load.p50_ms for item in measurements), 2),
        p99_ms=round(statistics.median(item.load.p99_ms for item in measurements), 2),
        peak_rss_mb=max(item.peak_rss_mb for item in measurements),
        cpu_ms_per_request=round(
            statistics.median(item.cpu_ms_per_request for item in measurements), 3
        ),
        requests=sum(item.load.requests for item in measurements),
    )


def summarize_workload(
    workload: Workload, measurements: list[Measurement]
) -> WorkloadSummary:
    mine = [item for item in measurements if item.workload == workload.key]
    by_round: dict[int, dict[str, Measurement]] = {}
    for item in mine:
        by_round.setdefault(item.round, {})[item.target] = item
    pairs = [pair for pair in by_round.values() if BARE in pair and FULL in pair]
    ratios = [
        pair[FULL].load.requests_per_second / pair[BARE].load.requests_per_second
        for pair in pairs
        if pair[BARE].load.requests_per_second
    ]
    cpu_ratios = [
        pair[BARE].cpu_ms_per_request / pair[FULL].cpu_ms_per_request
        for pair in pairs
        if pair[FULL].cpu_ms_per_request
    ]
    return WorkloadSummary(
        title=workload.title,
        bare=summarize_server([item for item in mine if item.target == BARE]),
        full=summarize_server([item for item in mine if item.target == FULL]),
        ratio=round(statistics.median(ratios), 3) if ratios else 0.0,
        cpu_ratio=round(statistics.median(cpu_ratios), 3) if cpu_ratios else 0.0,
        ratio_target=workload.ratio_target,
    )


def build_report(
    config: BenchConfig,
    machine: Machine,
    workloads: list[Workload],
    measurements: list[Measurement],
    jobs: list[JobLatency],
    tuned_label: str,
    imports: ImportSummary | None = None,
    nurture: NurtureSummary | None = None,
    conversion: ConversionSummary | None = None,
    stripe: StripeSummary | None = None,
) -> Report:
    report = Report(
        config=config,
        machine=machine,
        jobs=jobs,
        imports=imports,
        nurture=nurture,
        conversion=conversion,
        stripe=stripe,
    )
    report.workloads = [summarize_workload(item, measurements) for item in workloads]
    for summary in report.workloads:
        report.checks.append(
            Check(
                name=f"{summary.title} full/bare req/s",
                measured=f"{summary.ratio:.2f}x",
                target=f">= {summary.ratio_target:.2f}x",
                met=summary.ratio >= summary.ratio_target,
            )
        )
    if report.workloads:
        peak = max(summary.full.peak_rss_mb for summary in report.workloads)
        report.checks.append(
            Check(
                name="API peak RSS under load",
                measured=f"{peak:.1f} MB",
                target=f"<= {config.targets.peak_rss_mb:.0f} MB",
                met=peak <= config.targets.peak_rss_mb,
            )
        )
    for latency in jobs:
        if latency.label == tuned_label:
            report.checks.append(
                Check(
                    name="job start p95",
                    measured=f"{latency.p95_ms:.1f} ms",
                    target=f"<= {config.targets.job_start_p95_ms:.0f} ms",
                    met=latency.p95_ms <= config.targets.job_start_p95_ms,
                )
            )
    if imports is not None:
        report.checks.append(
            Check(
                name=f"{imports.title} full/bare rows/s",
                measured=f"{imports.ratio:.2f}x",
                target=f">= {imports.ratio_target:.2f}x",
                met=imports.ratio >= imports.ratio_target,
            )
        )
    if nurture is not None:
        report.checks.append(
            Check(
                name=f"{TITLE_NURTURE} worker/bare emails/s",
                measured=f"{nurture.ratio:.2f}x",
                target=f">= {nurture.ratio_target:.2f}x",
                met=nurture.ratio >= nurture.ratio_target,
            )
        )
    if conversion is not None:
        report.checks.append(
            Check(
                name=f"{conversion.title} full/bare req/s",
                measured=f"{conversion.ratio:.2f}x",
                target=f">= {conversion.ratio_target:.2f}x",
                met=conversion.ratio >= conversion.ratio_target,
            )
        )
    if stripe is not None:
        report.checks.append(
            Check(
                name=f"{TITLE_STRIPE} full/bare deliveries/s",
                measured=f"{stripe.ratio:.2f}x",
                target=f">= {stripe.ratio_target:.2f}x",
                met=stripe.ratio >= stripe.ratio_target,
            )
        )
    return report


def render(report: Report) -> str:
    """Format the report as the plain-text tables ``make bench`` prints."""
    config = report.config
    machine = report.machine
    lines = [
        f"machine: {machine.cpus} CPUs ({machine.cpu_model}), "
        f"{machine.memory_gib} GiB, Python {machine.python}, "
        f"PostgreSQL {machine.postgres}",
        f"load: {config.leads} leads, {config.concurrency} connections, "
        f"{config.workers} uvicorn worker(s) with uvloop and httptools, "
        f"{config.rounds} round(s) of {config.warmup_seconds:g} s warm-up + "
        f"{config.duration_seconds:g} s; medians over rounds; CPU ratio is "
        "bare CPU ms/req over full",
    ]
    if report.workloads:
        lines += [
            "",
            f"{'workload':<22}{'server':<11}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'CPU ms/req':>12}{'peak RSS MB':>13}",
        ]
    for summary in report.workloads:
        for name, server in (("bare", summary.bare), ("full", summary.full)):
            title = summary.title if name == "bare" else ""
            lines.append(
                f"{title:<22}{name:<11}{server.requests_per_second:>10.1f}"
                f"{server.p50_ms:>9.2f}{server.p99_ms:>9.2f}"
                f"{server.cpu_ms_per_request:>12.3f}{server.peak_rss_mb:>13.1f}"
            )
        lines.append(
            f"{'':<22}{'full/bare':<11}{summary.ratio:>9.2f}x{'':<18}"
            f"{summary.cpu_ratio:>11.2f}x"
        )
    if report.jobs:
        lines += [
            "",
            f"{'job start latency':<22}{'poll s':>8}{'jobs':>7}{'p50 ms':>9}"
            f"{'p95 ms':>9}{'max ms':>9}",
        ]
        for latency in report.jobs:
            lines.append(
                f"{latency.label:<22}{latency.poll_delay_seconds:>8.2f}"
                f"{latency.jobs:>7}{latency.p50_ms:>9.1f}{latency.p95_ms:>9.1f}"
                f"{latency.max_ms:>9.1f}"
            )
    if report.imports is not None:
        lines += render_import(report.imports)
    if report.nurture is not None:
        lines += render_nurture(report.nurture)
    if report.conversion is not None:
        lines += render_conversion(report.conversion)
    if report.stripe is not None:
        lines += render_stripe(report.stripe)
    if report.checks:
        lines += ["", "targets (reported, not asserted):"]
        for check in report.checks:
            verdict = "met" if check.met else "missed"
            lines.append(
                f"  {check.name:<38}{check.measured:>10}  {check.target:<10} {verdict}"
            )
    return "\n".join(lines)
