"""Fixtures of the customer tests: committed connections, for races of creates."""

from tests.opportunities.conftest import (  # noqa: F401
    committed_auth,
    committed_client,
    committed_workspace,
    committing_sessionmaker,
)
