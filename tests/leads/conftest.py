"""The committed-connection fixtures of the opportunity tests, for conversion races."""

from tests.opportunities.conftest import (  # noqa: F401
    committed_auth,
    committed_client,
    committed_workspace,
    committing_sessionmaker,
)
