"""The schema revision the migrations end at."""

from __future__ import annotations


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    from continuo.store.engine import MIGRATIONS

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head
