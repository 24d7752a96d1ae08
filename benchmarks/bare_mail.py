"""The baseline of the nurture benchmark: ``python -m benchmarks.bare_mail ...``.

It reads the enrolled leads and the step's templates once. Then ``--concurrency`` tasks
compose each message with ``app.nurture.compose.compose``, which gives it the worker's
headers, unsubscribe link and body. They send it with ``aiosmtplib.send`` over a
connection of its own, as ``SmtpMailer`` does. Nothing is read or written in
PostgreSQL per message. It prints one JSON line when done: the messages sent, those
that failed with the first error, and the CPU seconds it used.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from dataclasses import dataclass

import aiosmtplib
import asyncpg
import orjson

from app.core.clock import utcnow
from app.nurture import unsubscribe
from app.nurture.compose import Recipient, compose, message_id_for
from app.nurture.mailer import MESSAGE_POLICY
from app.settings import Settings

WIRE_POLICY = MESSAGE_POLICY.clone(linesep="\r\n")


@dataclass(frozen=True)
class Job:
    enrollment_id: uuid.UUID
    lead_id: uuid.UUID
    recipient: Recipient


@dataclass
class Tally:
    sent: int = 0
    failed: int = 0
    first_error: str | None = None


async def load(
    dsn: str, workspace_id: uuid.UUID
) -> tuple[uuid.UUID, str, str, list[Job]]:
    """Read the step's templates and the leads of every enrollment in the workspace."""
    connection = await asyncpg.connect(dsn)
    try:
        step = await connection.fetchrow(
            "SELECT id, subject, body_text FROM sequence_steps "
            "WHERE workspace_id = $1 AND position = 0",
            workspace_id,
        )
        rows = await connection.fetch(
            "SELECT e.id AS enrollment_id, l.id AS lead_id, l.email, "
            "l.email_normalized, l.first_name, l.last_name, l.company, l.title, "
            "l.phone FROM enrollments e JOIN leads l ON l.id = e.lead_id "
            "WHERE e.workspace_id = $1 ORDER BY e.id",
            workspace_id,
        )
    finally:
        await connection.close()
    if step is None:
        raise SystemExit(f"The workspace {workspace_id} has no sequence step to send.")
    jobs = [
        Job(
            enrollment_id=row["enrollment_id"],
            lead_id=row["lead_id"],
            recipient=Recipient(
                email=(
                    f"{row['email'].rpartition('@')[0]}@"
                    f"{row['email_normalized'].rpartition('@')[2]}"
                ),
                first_name=row["first_name"],
                last_name=row["last_name"],
                company=row["company"],
                title=row["title"],
                phone=row["phone"],
            ),
        )
        for row in rows
    ]
    return step["id"], step["subject"], step["body_text"], jobs


async def send_all(
    jobs: list[Job],
    *,
    workspace_id: uuid.UUID,
    subject: str,
    body_text: str,
    settings: Settings,
    port: int,
    concurrency: int,
) -> Tally:
    tally = Tally()
    queue: asyncio.Queue[Job] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    secret = settings.signing_secret.get_secret_value()

    async def sender() -> None:
        while not queue.empty():
            job = queue.get_nowait()
            link = unsubscribe.unsubscribe_url(
                settings.public_base_url,
                unsubscribe.sign(
                    secret,
                    unsubscribe.UnsubscribeToken(
                        workspace_id=workspace_id,
                        lead_id=job.lead_id,
                        enrollment_id=job.enrollment_id,
                    ),
                ),
            )
            message = compose(
                recipient=job.recipient,
                subject=subject,
                body_text=body_text,
                mail_from=settings.mail_from,
                message_id=message_id_for(uuid.uuid4(), settings.mail_from),
                unsubscribe_url=link,
                sent_at=utcnow(),
            )
            try:
                await aiosmtplib.send(
                    message.as_bytes(policy=WIRE_POLICY),
                    sender=message["From"].addresses[0].addr_spec,
                    recipients=[item.addr_spec for item in message["To"].addresses],
                    hostname="127.0.0.1",
                    port=port,
                    start_tls=False,
                    timeout=settings.smtp_timeout_seconds,
                )
            except (aiosmtplib.SMTPException, OSError) as error:
                tally.failed += 1
                tally.first_error = tally.first_error or repr(error)
            else:
                tally.sent += 1

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return tally


async def main_async(arguments: argparse.Namespace) -> dict[str, object]:
    settings = Settings()
    workspace_id = uuid.UUID(arguments.workspace)
    _, subject, body_text, jobs = await load(arguments.dsn, workspace_id)
    started = time.monotonic()
    async with asyncio.timeout(arguments.timeout):
        tally = await send_all(
            jobs,
            workspace_id=workspace_id,
            subject=subject,
            body_text=body_text,
            settings=settings,
            port=arguments.port,
            concurrency=arguments.concurrency,
        )
    return {
        "jobs": len(jobs),
        "sent": tally.sent,
        "failed": tally.failed,
        "first_error": tally.first_error,
        "send_seconds": time.monotonic() - started,
        "cpu_seconds": time.process_time(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True, help="asyncpg DSN of the database.")
    parser.add_argument("--workspace", required=True, help="UUID of the workspace.")
    parser.add_argument("--port", type=int, required=True, help="SMTP port.")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--timeout", type=float, required=True, help="Seconds.")
    arguments = parser.parse_args()
    summary = asyncio.run(main_async(arguments))
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")


if __name__ == "__main__":
    main()
