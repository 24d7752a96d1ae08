"""The webhook benchmark's bare sender, against a real receiver on 127.0.0.1."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from app.webhooks.signing import generate_secret
from benchmarks.bare_webhooks import send_all
from benchmarks.servers import free_port, start_process
from benchmarks.webhooks import Receiver, run_bare, sample_bodies


async def test_send_all_signs_each_body_once() -> None:
    receiver = Receiver()
    seen: list[tuple[dict[str, str], bytes]] = []
    handle = receiver.handle

    async def keep(request):  # type: ignore[no-untyped-def]
        seen.append((dict(request.headers), await request.read()))
        return await handle(request)

    receiver.handle = keep  # type: ignore[method-assign]
    await receiver.start()
    secret = generate_secret()
    bodies = sample_bodies(25)
    receiver.reset(len(bodies))
    try:
        started = await send_all(
            f"http://127.0.0.1:{receiver.port}/hooks", secret, 4, bodies
        )
    finally:
        await receiver.stop()

    assert sorted(started) == sorted(message_id for message_id, _ in bodies)
    assert sorted(receiver.arrivals) == sorted(started)
    assert receiver.repeats == 0
    verifier = Webhook(secret)
    for headers, body in seen:
        assert verifier.verify(body, headers) == orjson.loads(body)


async def test_run_bare_times_a_separate_process(tmp_path: Path) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        result = await run_bare(
            receiver, sample_bodies(40), generate_secret(), 5, tmp_path
        )
    finally:
        await receiver.stop()

    assert result.deliveries == 40
    assert result.seconds > 0
    assert result.p99_ms >= result.p50_ms
    assert result.sender_cpu_ms is not None
    assert result.sender_cpu_ms > 0
    assert result.postgres_cpu_ms is None
    assert (tmp_path / "bare-sender.log").exists()


async def test_bare_sender_fails_without_receiver(tmp_path: Path) -> None:
    source = tmp_path / "bodies.json"
    source.write_bytes(
        orjson.dumps(
            {
                # A port just freed, where nothing listens, so the connection fails.
                "url": f"http://127.0.0.1:{free_port()}/hooks",
                "secret": generate_secret(),
                "concurrency": 1,
                "bodies": [["wd_test", "{}"]],
            }
        )
    )
    sender = await start_process(
        "bare-sender",
        [
            sys.executable,
            "-m",
            "benchmarks.bare_webhooks",
            str(source),
            str(tmp_path / "started.json"),
        ],
        {},
        tmp_path,
    )
    status = await sender.process.wait()
    await sender.stop()

    assert status != 0
    assert not (tmp_path / "started.json").exists()


@pytest.mark.parametrize("argv", [[], ["one"], ["one", "two", "three"]])
def test_bare_sender_usage(argv: list[str]) -> None:
    from benchmarks.bare_webhooks import main

    assert main(argv) == 2
