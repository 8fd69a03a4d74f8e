"""API keys: only a hash of each key is kept."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select, text, update
from sqlalchemy import insert as sql_insert

from continuo.store.base import StoredKey
from continuo.store.schema import api_keys, now_us

KEY_PROJECT = select(api_keys.c.project).where(api_keys.c.hash == bindparam("hash"), api_keys.c.revoked_at_us.is_(None))
HAS_KEYS = select(api_keys.c.id).where(api_keys.c.revoked_at_us.is_(None)).limit(1)


def create_key(conn: Connection, key_id: str, project: str, key_hash: str) -> None:
    conn.execute(sql_insert(api_keys), {"id": key_id, "project": project, "hash": key_hash, "created_at_us": now_us()})


def list_keys(conn: Connection) -> list[StoredKey]:
    query = select(api_keys.c.id, api_keys.c.project, api_keys.c.created_at_us, api_keys.c.revoked_at_us).order_by(
        api_keys.c.created_at_us, api_keys.c.id
    )
    return [StoredKey(*row) for row in conn.execute(query).all()]


def revoke_key(conn: Connection, key_id: str) -> bool:
    result = conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at_us.is_(None))
        .values(revoked_at_us=now_us())
    )
    return bool(result.rowcount)


def key_project(conn: Connection, key_hash: str) -> str | None:
    project: str | None = conn.execute(KEY_PROJECT, {"hash": key_hash}).scalar()
    return project


def has_keys(conn: Connection) -> bool:
    return conn.execute(HAS_KEYS).first() is not None


def ping(conn: Connection) -> bool:
    conn.execute(text("SELECT 1"))
    return True
