"""SQL of the message outbox: the sender's journal position, rendered messages and their delivery."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    text,
    update,
)

from quota.dialect import is_pg

MESSAGE_META = MetaData()
MESSAGE_CURSORS = Table(
    "message_cursors",
    MESSAGE_META,
    Column("name", String(32), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
)
MESSAGES = Table(
    "messages",
    MESSAGE_META,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("recipient", String(64), nullable=False),
    Column("text_ar", Text, nullable=False),
    Column("text_en", Text, nullable=False),
    Column("state", String(10), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", String(200), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
)

# Messages (the journal is the outbox) -----------------------------------------------------------
def lock_cursor(conn: Connection, name: str) -> int:
    """The sender's saved journal position, locked so one collector advances it at a time."""
    c = MESSAGE_CURSORS
    query = select(c.c.last_seq).where(c.c.name == name)
    if is_pg(conn):
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        conn.execute(insert(c), [{"name": name, "last_seq": 0}])
        return 0
    return int(row[0])


def save_cursor(conn: Connection, name: str, last_seq: int) -> None:
    conn.execute(update(MESSAGE_CURSORS).where(MESSAGE_CURSORS.c.name == name).values(last_seq=last_seq))


def recipients(conn: Connection, entries: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """The family (phone, e-mail) each entry's holder belongs to, by seq."""
    found: dict[int, dict[str, Any]] = {}
    for e in entries:
        sql = {
            "family": "SELECT id, phone, email FROM families WHERE id = :h",
            "person": "SELECT f.id, f.phone, f.email FROM persons p JOIN families f ON f.id = p.family_id "
                      "WHERE p.id = :h",
            "vehicle": "SELECT f.id, f.phone, f.email FROM vehicles v "
                       "JOIN persons p ON p.id = v.owner_person_id "
                       "JOIN families f ON f.id = p.family_id WHERE v.id = :h",
        }.get(str(e["holder_type"]))
        row = conn.execute(text(sql), {"h": e["holder_id"]}).first() if sql else None
        if row is not None:
            found[int(e["seq"])] = {"family_id": row[0], "phone": row[1], "email": row[2]}
    return found


def names(conn: Connection) -> tuple[dict[str, tuple[str, str, str, int]], dict[str, tuple[str, str]]]:
    """Products (name_ar, name_en, unit, price_per_qty) and points (name_ar, name_en) by code."""
    products = {r[0]: (r[1], r[2], r[3], int(r[4])) for r in conn.execute(
        text("SELECT code, name_ar, name_en, unit, price_per_qty FROM products"))}
    points = {r[0]: (r[1], r[2]) for r in conn.execute(text("SELECT code, name_ar, name_en FROM points"))}
    return products, points


def insert_messages(conn: Connection, messages: Sequence[Mapping[str, Any]]) -> None:
    if messages:
        conn.execute(insert(MESSAGES), [dict(m) for m in messages])


def claim_due(conn: Connection, channel: str, now: datetime, lease_until: datetime,
              limit: int) -> list[dict[str, Any]]:
    """Claim the due messages for one delivery round: pending ones whose retry time has come, and ones
    a round claimed whose lease ran out (its worker died mid-send). Each becomes ``sending`` until
    ``lease_until``, its ``attempts`` counted up: the returned rows carry the new count, which is the
    claim's token (``finish_claim``). On PostgreSQL rows another round is claiming are skipped; on SQLite
    the caller's write lock makes claims one at a time."""
    m = MESSAGES
    query = (
        select(m).where(m.c.channel == channel, m.c.state.in_(["pending", "sending"]),
                        m.c.next_attempt_at <= now)
        .order_by(m.c.id).limit(limit)
    )
    if is_pg(conn):
        query = query.with_for_update(skip_locked=True)
    rows = [dict(r) for r in conn.execute(query).mappings()]
    if rows:
        conn.execute(update(m).where(m.c.id.in_([r["id"] for r in rows]))
                     .values(state="sending", attempts=m.c.attempts + 1, next_attempt_at=lease_until))
    for r in rows:
        r["attempts"] = int(r["attempts"]) + 1
        r["state"] = "sending"
        r["next_attempt_at"] = lease_until
    return rows


def finish_claim(conn: Connection, message_id: int, token: int, **values: Any) -> bool:
    """Record a claimed message's result if the claim is still the caller's (``sending`` with the
    attempts count it claimed with); False when another round took it over after the lease ran out."""
    m = MESSAGES
    done = conn.execute(update(m).where(m.c.id == message_id, m.c.state == "sending", m.c.attempts == token)
                        .values(**values))
    return bool(done.rowcount == 1)


def release(conn: Connection, claims: Sequence[tuple[int, int]], now: datetime) -> int:
    """Give back claimed, unsent messages ``(id, token)``: pending again, due now, the attempt not counted."""
    m = MESSAGES
    released = 0
    for message_id, token in claims:
        released += conn.execute(
            update(m).where(m.c.id == message_id, m.c.state == "sending", m.c.attempts == token)
            .values(state="pending", attempts=token - 1, next_attempt_at=now)).rowcount
    return released


def message_states(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(select(MESSAGES).order_by(MESSAGES.c.seq)).mappings()]
