"""Shared limits in the database: token buckets and stream slots, by key hash."""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy import insert as sql_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from continuo.store.schema import rate_buckets, stream_slots


def take_token(conn: Connection, key: str, rate: int, now_us: int) -> float | None:
    """The token bucket of ``key``, refilled for the time since it was last touched. The
    row is made if missing (racing replicas both succeed), then locked for the update."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        insert(rate_buckets)
        .values(key=key, tokens=float(rate), updated_at_us=now_us)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    row = conn.execute(
        select(rate_buckets.c.tokens, rate_buckets.c.updated_at_us).where(rate_buckets.c.key == key).with_for_update()
    ).one()
    tokens, last = float(row[0]), int(row[1])
    tokens = min(float(rate), tokens + max(0, now_us - last) / 1e6 * rate / 60)
    wait = None if tokens >= 1 else (1 - tokens) * 60 / rate
    if wait is None:
        tokens -= 1
    conn.execute(update(rate_buckets).where(rate_buckets.c.key == key).values(tokens=tokens, updated_at_us=now_us))
    return wait


def open_slot(conn: Connection, key: str, slot: str, limit: int, now_us: int, expires_us: int) -> bool:
    conn.execute(delete(stream_slots).where(stream_slots.c.key == key, stream_slots.c.expires_at_us < now_us))
    held = conn.execute(select(func.count()).select_from(stream_slots).where(stream_slots.c.key == key)).scalar()
    if (held or 0) >= limit:
        return False
    conn.execute(sql_insert(stream_slots), {"id": slot, "key": key, "expires_at_us": expires_us})
    return True


def close_slot(conn: Connection, key: str, slot: str) -> None:
    conn.execute(delete(stream_slots).where(stream_slots.c.id == slot, stream_slots.c.key == key))


def renew_slots(conn: Connection, slots: list[str], expires_us: int) -> None:
    conn.execute(update(stream_slots).where(stream_slots.c.id.in_(slots)).values(expires_at_us=expires_us))
