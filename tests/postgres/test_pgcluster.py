from __future__ import annotations

import psycopg
import pytest

pytestmark = pytest.mark.postgres


def test_server_answers_over_tcp_with_password(pg_server) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(pg_server.url()) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
    assert version is not None and int(version[0]) >= 150000


def test_wrong_password_is_refused(pg_server) -> None:  # type: ignore[no-untyped-def]
    bad = pg_server.url().replace(f":{pg_server.password}@", ":wrong@")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(bad, connect_timeout=5)
