"""Profile the full stack under load: ``python -m benchmarks.profile get|post``.

The database is seeded and ``create_app`` served exactly as ``make bench`` does. The
load generator then drives the server while py-spy samples it for the measured part of
the run. The collapsed stacks go to ``benchmarks/.data/profile-<workload>.txt`` (the input
of flame graph tools), and the functions with the most samples are printed, by their
own time and by the time spent inside them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from benchmarks.api import FULL, build_spec, full_env, run_load_process, workloads
from benchmarks.config import BenchConfig
from benchmarks.environment import (
    DATA_DIR,
    BenchServers,
    bench_servers,
)
from benchmarks.runner import claim_and_prepare, release
from benchmarks.seed import Seed, seed
from benchmarks.servers import start_uvicorn

SAMPLES_PER_SECOND = 250


@dataclasses.dataclass(frozen=True)
class Hotspots:
    """Sample counts per frame: own samples, and samples with the frame on the stack."""

    total: int
    own: Counter[str]
    inclusive: Counter[str]


def read_collapsed(path: Path) -> Hotspots:
    """Count the samples of a py-spy ``raw`` file, one ``frame;frame;... count`` a line."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return Hotspots(total=total, own=own, inclusive=inclusive)


def render_hotspots(hotspots: Hotspots, limit: int) -> str:
    lines = [f"{hotspots.total} samples"]
    for title, counter in (
        ("own time", hotspots.own),
        ("inclusive", hotspots.inclusive),
    ):
        lines += ["", f"top {limit} by {title}:"]
        for frame, count in counter.most_common(limit):
            lines.append(f"{100 * count / max(hotspots.total, 1):6.1f}%  {frame}")
    return "\n".join(lines)


async def profile_workload(
    config: BenchConfig, servers: BenchServers, seeded: Seed, key: str, output: Path
) -> None:
    workload = next(item for item in workloads(config) if item.key == key)
    with tempfile.TemporaryDirectory(prefix="salescycle-profile-") as log_dir:
        server = await start_uvicorn(
            FULL, "app.main:create_app", full_env(servers), 1, Path(log_dir)
        )
        try:
            load = asyncio.create_task(
                run_load_process(build_spec(config, workload, FULL, server, seeded))
            )
            await asyncio.sleep(config.warmup_seconds)
            spy = await asyncio.create_subprocess_exec(
                _py_spy(),
                "record",
                "--pid",
                str(server.pid),
                "--duration",
                str(int(config.duration_seconds)),
                "--rate",
                str(SAMPLES_PER_SECOND),
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(output),
                stdout=asyncio.subprocess.DEVNULL,
            )
            await spy.wait()
            result = await load
        finally:
            await server.stop()
    print(
        f"{workload.title}: {result.requests_per_second:.1f} req/s while sampled, "
        f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms",
        file=sys.stderr,
    )


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is missing; run `make install` to get the dev tools.")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument(
        "workload", choices=[item.key for item in workloads(BenchConfig())]
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="Seconds py-spy samples for."
    )
    parser.add_argument("--top", type=int, default=30, help="Functions listed.")
    arguments = parser.parse_args()
    config = dataclasses.replace(
        BenchConfig(), duration_seconds=arguments.seconds + 1, rounds=1
    )
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    output = DATA_DIR / f"profile-{arguments.workload}.txt"
    with bench_servers() as servers:
        claim_and_prepare(servers)
        try:
            seeded = asyncio.run(
                seed(
                    servers.database_url,
                    leads=config.leads,
                    sample_ids=config.sample_ids,
                )
            )
            asyncio.run(
                profile_workload(config, servers, seeded, arguments.workload, output)
            )
        finally:
            release(servers)
    print(render_hotspots(read_collapsed(output), arguments.top))
    print(f"\ncollapsed stacks: {output}")


if __name__ == "__main__":
    main()
