"""Which database a connection talks to: the repositories keep a PostgreSQL form beside a portable one."""

from __future__ import annotations

from sqlalchemy import Connection


def is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"
