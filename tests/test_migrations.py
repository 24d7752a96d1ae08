from __future__ import annotations

import asyncio

from app.core import migrate
from tests.conftest import Servers, recreate_database, sibling_database_url


class TestMigrations:
    def test_models_match_schema(self, servers: Servers) -> None:
        migrate.check(servers.database_url)

    def test_downgrade_and_upgrade(self, servers: Servers) -> None:
        url = sibling_database_url(servers.database_url, "migrations")
        asyncio.run(recreate_database(url))

        migrate.upgrade(url)
        migrate.downgrade(url, "base")
        migrate.upgrade(url)

        migrate.check(url)
