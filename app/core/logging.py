"""structlog configuration: JSON lines in production, console rendering in dev.

Event names are constants such as ``"invoice.finalized"``; ids travel as fields. The
request id is bound in a context variable by the request middleware and by each job, so
every line of one request or job carries it.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(log_format: str = "json", level: str = "INFO") -> None:
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if log_format == "console":
        # A plain traceback: the default rich one renders every frame's locals, which
        # takes seconds for a deep stack and blocks the event loop meanwhile. Colours
        # only on a terminal, since ANSI codes in a redirected log break grep.
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(),
            exception_formatter=structlog.dev.plain_traceback,
        )
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries that log through the standard library (uvicorn, arq, alembic) keep their
    # own handlers; this only sets the shared threshold.
    logging.basicConfig(level=numeric_level, stream=sys.stderr, format="%(message)s")
    # arq logs a line as each job starts and ends, several a second from the sweeps
    # alone, so they show only at DEBUG. Its warnings and errors show at any level.
    arq_level = numeric_level
    if numeric_level > logging.DEBUG:
        arq_level = max(numeric_level, logging.WARNING)
    logging.getLogger("arq").setLevel(arq_level)
