"""Fixtures of the lead tests: the worker context of import jobs, and the
committed-connection fixtures of the opportunity tests, for conversion races."""

from typing import Any

import pytest

from app.core.jobs import JobQueue
from app.settings import Settings
from tests.conftest import TestDatabase
from tests.opportunities.conftest import (  # noqa: F401
    committed_auth,
    committed_client,
    committed_workspace,
    committing_sessionmaker,
)


@pytest.fixture
def context(
    database: TestDatabase, queue: JobQueue, settings: Settings
) -> dict[str, Any]:
    """The arq context a worker gives its jobs, on the test's database and Redis."""
    return {"db": database, "queue": queue, "settings": settings}
