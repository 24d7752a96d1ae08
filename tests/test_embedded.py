"""The embedded Redis server and the data folder lock.

PostgreSQL's embedded lifecycle (start, fast shutdown, restart on the same folder) is
covered end to end by the ``salescycle dev`` tests.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest
import redis

from app import embedded


def client(server: embedded.EmbeddedRedis) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(server.socket), socket_timeout=5)


class TestEmbeddedRedis:
    def test_restart_keeps_data(self, tmp_path: Path) -> None:
        url, server = embedded.start_redis(tmp_path)
        try:
            connection = client(server)
            connection.set("salescycle:probe", "kept")
            connection.close()
        finally:
            server.shutdown()

        assert url == f"unix://{tmp_path / 'redis' / 'redis.sock'}?db=0"
        assert not server.process.is_running()
        assert (tmp_path / "redis" / "dump.rdb").exists()
        _, restarted = embedded.start_redis(tmp_path)
        try:
            connection = client(restarted)
            assert connection.get("salescycle:probe") == b"kept"
            connection.close()
        finally:
            restarted.shutdown()

    def test_adopts_orphan(self, tmp_path: Path) -> None:
        _, orphan = embedded.start_redis(tmp_path)
        try:
            _, adopted = embedded.start_redis(tmp_path)

            assert adopted.pid == orphan.pid
            assert adopted.ping()
        finally:
            orphan.shutdown()

    def test_replaces_stale_pidfile(self, tmp_path: Path) -> None:
        folder = tmp_path / "redis"
        folder.mkdir()
        # A pid that no longer exists: the pidfile of a server that was killed.
        (folder / "redis.pid").write_text("999999999\n")

        _, server = embedded.start_redis(tmp_path)
        try:
            assert server.ping()
            assert server.pid != 999999999
        finally:
            server.shutdown()

    def test_long_folder_gets_short_socket(self, tmp_path: Path) -> None:
        deep = tmp_path / ("d" * 60) / ("e" * 60)

        url, server = embedded.start_redis(deep)
        try:
            assert len(str(server.socket)) <= 100
            assert server.ping()
        finally:
            server.shutdown()

        assert str(server.socket) in url

    def test_shutdown_after_kill(self, tmp_path: Path) -> None:
        _, server = embedded.start_redis(tmp_path)
        os.kill(server.pid, signal.SIGKILL)
        psutil.wait_procs([server.process], timeout=10)

        server.shutdown()

        assert not server.ping()


class TestLockDataDir:
    def test_second_lock_fails(self, tmp_path: Path) -> None:
        first = embedded.lock_data_dir(tmp_path)
        try:
            with pytest.raises(embedded.DataDirInUse, match=f"pid {os.getpid()}"):
                embedded.lock_data_dir(tmp_path)
        finally:
            first.close()

    def test_released_on_close(self, tmp_path: Path) -> None:
        embedded.lock_data_dir(tmp_path).close()

        second = embedded.lock_data_dir(tmp_path)
        second.close()
