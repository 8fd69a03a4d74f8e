"""Server secrets: made once, by whichever replica starts first, then only read."""

from __future__ import annotations

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from continuo.store.schema import now_us, server_secrets


def get_secret(conn: Connection, name: str) -> str | None:
    value: str | None = conn.execute(select(server_secrets.c.value).where(server_secrets.c.name == name)).scalar()
    return value


def ensure_secret(conn: Connection, name: str, value: str) -> str:
    """The secret named ``name``: ``value`` if there was none, else the one already kept
    (another replica may have made it first)."""
    existing = get_secret(conn, name)
    if existing is not None:
        return existing
    try:
        with conn.begin_nested():
            conn.execute(server_secrets.insert(), {"name": name, "value": value, "created_at_us": now_us()})
    except IntegrityError:
        pass
    kept = get_secret(conn, name)
    assert kept is not None
    return kept
