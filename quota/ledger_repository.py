"""Every SQL statement of the ledger (redemptions, holds, journal, seals, stock).

Functions take an open ``Connection`` inside the caller's transaction and never commit: the engine
commits once per group, a service once per use case. Statements are SQLAlchemy Core over typed
tables, so the same code runs on PostgreSQL and on the embedded SQLite; the few PostgreSQL-only
forms (row locks, one ``UPDATE … FROM unnest`` per group) are chosen by dialect here and nowhere else.
Times are written in UTC and read back as aware UTC (SQLite keeps them naive).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

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
    bindparam,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)

from quota import ledger_pg as pg
from quota.domain.chain import Seal
from quota.domain.decide import AllowanceState
from quota.models import Allowance, Hold, JournalEntry, StockDelivery
from quota.models import Seal as SealRow

ALLOWANCES = cast(Table, Allowance.__table__)
JOURNAL = cast(Table, JournalEntry.__table__)
HOLDS = cast(Table, Hold.__table__)
DELIVERIES = cast(Table, StockDelivery.__table__)
SEALS = cast(Table, SealRow.__table__)

# Tables of migration 0003 (not mapped: only this module reads or writes them).
LEDGER_META = MetaData()
POINT_STOCK = Table(
    "point_stock",
    LEDGER_META,
    Column("point_code", String(32), primary_key=True),
    Column("product_code", String(32), primary_key=True),
    Column("delivered_qty", BigInteger, nullable=False),
    Column("dispensed_qty", BigInteger, nullable=False),
)
SEAL_DIGESTS = Table(
    "seals", LEDGER_META, Column("id", Integer, primary_key=True), Column("digests", Text)
)
MESSAGE_CURSORS = Table(
    "message_cursors",
    LEDGER_META,
    Column("name", String(32), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
)
MESSAGES = Table(
    "messages",
    LEDGER_META,
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

STATE_COLUMNS = (
    "id",
    "holder_type",
    "holder_id",
    "product_code",
    "rule_version_id",
    "period_start",
    "period_end",
    "base_qty",
    "granted_qty",
    "used_qty",
    "held_qty",
    "carried_qty",
    "topup_qty",
    "last_redeemed_at",
    "home_point_code",
    "binding_changes",
)
HolderKey = tuple[str, int, str]


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


# Cards and points -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CardRow:
    serial: str
    state: str
    holder_type: str
    holder_id: int
    family_id: int | None


def find_cards(conn: Connection, serials: Iterable[str]) -> dict[str, CardRow]:
    """Cards by serial with the family of a person holder (a member draws the family allowance)."""
    wanted = sorted(set(serials))
    if not wanted:
        return {}
    if _is_pg(conn):
        return {r[0]: CardRow(r[0], r[1], r[2], int(r[3]), r[4]) for r in pg.cards(conn, wanted)}
    rows = conn.execute(
        text(
            "SELECT c.serial, c.state, c.holder_type, c.holder_id, p.family_id FROM cards c "
            "LEFT JOIN persons p ON c.holder_type = 'person' AND p.id = c.holder_id "
            "WHERE c.serial IN :serials"
        ).bindparams(bindparam("serials", expanding=True)),
        {"serials": wanted},
    )
    return {r[0]: CardRow(r[0], r[1], r[2], int(r[3]), r[4]) for r in rows}


def find_points(conn: Connection, codes: Iterable[str]) -> dict[str, frozenset[str]]:
    """Active points by code, with the products each serves."""
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    rows: Iterable[Any]
    if _is_pg(conn):
        rows = pg.points(conn, wanted)
    else:
        rows = conn.execute(
            text("SELECT code, products, active FROM points WHERE code IN :codes").bindparams(
                bindparam("codes", expanding=True)
            ),
            {"codes": wanted},
        )
    points: dict[str, frozenset[str]] = {}
    for code, products, active in rows:
        if active:
            listed = json.loads(products) if isinstance(products, str) else products
            points[code] = frozenset(listed or ())
    return points


# Allowances -------------------------------------------------------------------------------------
def _state(row: Mapping[Any, Any]) -> AllowanceState:
    values = {name: row[name] for name in STATE_COLUMNS}
    for name in ("period_start", "period_end", "last_redeemed_at"):
        values[name] = utc(values[name])
    return AllowanceState(**values)


def lock_current_allowances(
    conn: Connection, keys: Iterable[HolderKey], now: datetime
) -> dict[HolderKey, AllowanceState]:
    """The latest row started by ``now`` for each (holder, product), locked in id order.

    Every writer locks in id order, so concurrent groups never deadlock. Whether a calendar row has
    ended is the caller's decision (rolling rows restart themselves).
    """
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    if _is_pg(conn):
        states = [_state(row) for row in pg.lock_allowances(conn, wanted, now)]
        return {(s.holder_type, s.holder_id, s.product_code): s for s in states}
    a = ALLOWANCES
    a2 = a.alias("a2")
    latest = (
        select(func.max(a2.c.period_start))
        .where(
            a2.c.holder_type == a.c.holder_type,
            a2.c.holder_id == a.c.holder_id,
            a2.c.product_code == a.c.product_code,
            a2.c.period_start <= now,
        )
        .scalar_subquery()
    )
    query = (
        select(*(a.c[name] for name in STATE_COLUMNS))
        .where(tuple_(a.c.holder_type, a.c.holder_id, a.c.product_code).in_(wanted))
        .where(a.c.period_start == latest)
        .order_by(a.c.id)
    )
    if _is_pg(conn):
        query = query.with_for_update(of=a)
    found: dict[HolderKey, AllowanceState] = {}
    for row in conn.execute(query).mappings():
        state = _state(row)
        found[(state.holder_type, state.holder_id, state.product_code)] = state
    return found


def lock_allowance(conn: Connection, allowance_id: int) -> AllowanceState | None:
    query = select(*(ALLOWANCES.c[name] for name in STATE_COLUMNS)).where(ALLOWANCES.c.id == allowance_id)
    if _is_pg(conn):
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return None if row is None else _state(row)


def write_allowances(conn: Connection, states: Sequence[AllowanceState]) -> None:
    """Write back decided rows: one statement for the whole group."""
    if not states:
        return
    if _is_pg(conn):
        pg.update_allowances(conn, [
            {"id": s.id, "period_start": s.period_start, "period_end": s.period_end,
             "granted_qty": s.granted_qty, "used_qty": s.used_qty, "held_qty": s.held_qty,
             "carried_qty": s.carried_qty, "topup_qty": s.topup_qty, "last_redeemed_at": s.last_redeemed_at,
             "home_point_code": s.home_point_code, "binding_changes": s.binding_changes}
            for s in states
        ])
        return
    names = [n for n in STATE_COLUMNS if n not in ("id", "holder_type", "holder_id", "product_code")]
    stmt = (
        update(ALLOWANCES)
        .where(ALLOWANCES.c.id == bindparam("_id"))
        .values({name: bindparam(f"_{name}") for name in names})
    )
    conn.execute(
        stmt, [{"_id": s.id, **{f"_{n}": getattr(s, n) for n in names}} for s in states]
    )


def allowances_of_holder(conn: Connection, holder_type: str, holder_id: int) -> list[AllowanceState]:
    query = (
        select(*(ALLOWANCES.c[name] for name in STATE_COLUMNS))
        .where(ALLOWANCES.c.holder_type == holder_type, ALLOWANCES.c.holder_id == holder_id)
        .order_by(ALLOWANCES.c.product_code, ALLOWANCES.c.period_start)
    )
    return [_state(row) for row in conn.execute(query).mappings()]


def rule_version_body(conn: Connection, rule_version_id: int) -> tuple[dict[str, Any], int] | None:
    """A rule version's body and its product's ``price_per_qty`` (for building ``Terms``)."""
    row = conn.execute(
        text(
            "SELECT r.body, p.price_per_qty FROM rule_versions r "
            "LEFT JOIN products p ON p.code = r.product_code WHERE r.id = :id"
        ),
        {"id": rule_version_id},
    ).first()
    if row is None:
        return None
    body = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    return dict(body), int(row[1] or 1)


# Journal ----------------------------------------------------------------------------------------
def find_entries(conn: Connection, entry_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    wanted = sorted(set(entry_ids))
    if not wanted:
        return {}
    if _is_pg(conn):
        return {row["entry_id"]: _entry(row) for row in pg.entries(conn, wanted)}
    rows = conn.execute(select(JOURNAL).where(JOURNAL.c.entry_id.in_(wanted))).mappings()
    return {row["entry_id"]: _entry(row) for row in rows}


def _entry(row: Mapping[Any, Any]) -> dict[str, Any]:
    entry = dict(row)
    entry["created_at"] = utc(entry["created_at"])
    return entry


def insert_entries(conn: Connection, entries: Sequence[Mapping[str, Any]]) -> None:
    """Append journal rows: one multi-row INSERT for a group."""
    if entries and _is_pg(conn):
        pg.insert_entries(conn, entries)
    elif entries:
        conn.execute(insert(JOURNAL), [dict(e) for e in entries])


def entries_between(conn: Connection, first_seq: int, last_seq: int | None = None) -> list[dict[str, Any]]:
    query = select(JOURNAL).where(JOURNAL.c.seq >= first_seq).order_by(JOURNAL.c.seq)
    if last_seq is not None:
        query = query.where(JOURNAL.c.seq <= last_seq)
    return [_entry(row) for row in conn.execute(query).mappings()]


def entries_page(conn: Connection, after_seq: int, upto_seq: int, limit: int) -> list[dict[str, Any]]:
    """At most ``limit`` entries with ``after_seq < seq <= upto_seq``: gaps in seq do not stop a sealer."""
    query = (
        select(JOURNAL)
        .where(JOURNAL.c.seq > after_seq, JOURNAL.c.seq <= upto_seq)
        .order_by(JOURNAL.c.seq)
        .limit(limit)
    )
    return [_entry(row) for row in conn.execute(query).mappings()]


def entries_after(conn: Connection, seq: int, kinds: Sequence[str], limit: int) -> list[dict[str, Any]]:
    query = (
        select(JOURNAL)
        .where(JOURNAL.c.seq > seq, JOURNAL.c.kind.in_(list(kinds)), JOURNAL.c.result == "ok")
        .order_by(JOURNAL.c.seq)
        .limit(limit)
    )
    return [_entry(row) for row in conn.execute(query).mappings()]


def journal_used_by_allowance(conn: Connection) -> dict[int, int]:
    """Sum of successful movements per allowance (invariant 2, for checks and reports)."""
    rows = conn.execute(
        select(JOURNAL.c.allowance_id, func.sum(JOURNAL.c.quantity_qty))
        .where(JOURNAL.c.result == "ok", JOURNAL.c.allowance_id.is_not(None))
        .group_by(JOURNAL.c.allowance_id)
    )
    return {int(a): int(q) for a, q in rows}


def family_draws(conn: Connection, family_id: int, limit: int) -> list[dict[str, Any]]:
    """Who (card, its holder) drew what and where from a family's allowances, newest first."""
    rows = conn.execute(
        text(
            "SELECT j.seq, j.entry_id, j.kind, j.product_code, j.quantity_qty, j.point_code, "
            "j.card_serial, c.holder_type AS card_holder_type, c.holder_id AS card_holder_id, "
            "j.remaining_qty, j.created_at FROM journal j LEFT JOIN cards c ON c.serial = j.card_serial "
            "WHERE j.holder_type = 'family' AND j.holder_id = :family AND j.result = 'ok' "
            "AND j.kind IN ('redeem', 'post', 'reverse', 'topup') ORDER BY j.seq DESC LIMIT :limit"
        ).columns(created_at=DateTime(timezone=True)),
        {"family": family_id, "limit": limit},
    ).mappings()
    return [_entry(row) for row in rows]


# Holds ------------------------------------------------------------------------------------------
def insert_hold(conn: Connection, hold: Mapping[str, Any]) -> None:
    conn.execute(insert(HOLDS), [dict(hold)])


def lock_hold(conn: Connection, hold_id: str) -> dict[str, Any] | None:
    query = select(HOLDS).where(HOLDS.c.id == hold_id)
    if _is_pg(conn):
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        return None
    hold = dict(row)
    hold["expires_at"] = utc(hold["expires_at"])
    return hold


def set_hold_state(conn: Connection, hold_id: str, state: str, posted_qty: int | None) -> None:
    conn.execute(update(HOLDS).where(HOLDS.c.id == hold_id).values(state=state, posted_qty=posted_qty))


def expired_hold_ids(conn: Connection, now: datetime, limit: int) -> list[str]:
    query = (
        select(HOLDS.c.id)
        .where(HOLDS.c.state == "pending", HOLDS.c.expires_at <= now)
        .order_by(HOLDS.c.expires_at)
        .limit(limit)
    )
    return [str(r) for r in conn.scalars(query)]


# Point stock ------------------------------------------------------------------------------------
def lock_stock(conn: Connection, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Balance (delivered − dispensed) of the tracked (point, product) pairs, locked in key order.

    Locked after the allowances, in key order, by every writer: one lock per point per group, never
    one per redemption. A pair with no row has never had a delivery and is not tracked.
    """
    wanted = sorted(set(pairs))
    if not wanted:
        return {}
    if _is_pg(conn):
        return {(p, q): int(b) for p, q, b in pg.lock_stock(conn, wanted)}
    s = POINT_STOCK
    query = (
        select(s.c.point_code, s.c.product_code, s.c.delivered_qty - s.c.dispensed_qty)
        .where(tuple_(s.c.point_code, s.c.product_code).in_(wanted))
        .order_by(s.c.point_code, s.c.product_code)
    )
    if _is_pg(conn):
        query = query.with_for_update()
    return {(p, q): int(b) for p, q, b in conn.execute(query)}


def add_dispensed(conn: Connection, dispensed: Mapping[tuple[str, str], int]) -> None:
    rows = [{"_p": p, "_q": q, "_d": d} for (p, q), d in sorted(dispensed.items()) if d]
    if rows and _is_pg(conn):
        pg.add_dispensed(conn, [(p, q, d) for (p, q), d in sorted(dispensed.items()) if d])
    elif rows:
        s = POINT_STOCK
        conn.execute(
            update(s)
            .where(s.c.point_code == bindparam("_p"), s.c.product_code == bindparam("_q"))
            .values(dispensed_qty=s.c.dispensed_qty + bindparam("_d")),
            rows,
        )


def record_delivery(
    conn: Connection, point_code: str, product_code: str, quantity_qty: int, at: datetime, reference: str
) -> None:
    """A delivery; the first one starts tracking the pair, counting what the journal already shows."""
    conn.execute(
        insert(DELIVERIES),
        [{"point_code": point_code, "product_code": product_code, "quantity_qty": quantity_qty,
          "delivered_at": at, "reference": reference}],
    )
    s = POINT_STOCK
    exists = conn.execute(
        select(s.c.point_code).where(s.c.point_code == point_code, s.c.product_code == product_code)
    ).first()
    if exists is None:
        dispensed = journal_dispensed(conn, point_code, product_code)
        conn.execute(insert(s), [{"point_code": point_code, "product_code": product_code,
                                  "delivered_qty": 0, "dispensed_qty": dispensed}])
    conn.execute(
        update(s)
        .where(s.c.point_code == point_code, s.c.product_code == product_code)
        .values(delivered_qty=s.c.delivered_qty + quantity_qty)
    )


def journal_dispensed(conn: Connection, point_code: str, product_code: str) -> int:
    total = conn.execute(
        select(func.coalesce(func.sum(JOURNAL.c.quantity_qty), 0)).where(
            JOURNAL.c.point_code == point_code,
            JOURNAL.c.product_code == product_code,
            JOURNAL.c.result == "ok",
            JOURNAL.c.kind.in_(["redeem", "post", "reverse", "walk_in"]),
        )
    ).scalar_one()
    return int(total)


def stock_rows(conn: Connection, point_code: str | None) -> list[dict[str, Any]]:
    query = select(POINT_STOCK).order_by(POINT_STOCK.c.point_code, POINT_STOCK.c.product_code)
    if point_code is not None:
        query = query.where(POINT_STOCK.c.point_code == point_code)
    return [dict(r) for r in conn.execute(query).mappings()]


def daily_movements(
    conn: Connection, point_code: str, start: datetime, end: datetime
) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
    """(day, product, qty) delivered and dispensed at a point in ``[start, end)``, for the daily report."""
    day_d = func.substr(func.cast(DELIVERIES.c.delivered_at, String), 1, 10)
    delivered = conn.execute(
        select(day_d, DELIVERIES.c.product_code, func.sum(DELIVERIES.c.quantity_qty))
        .where(DELIVERIES.c.point_code == point_code, DELIVERIES.c.delivered_at >= start,
               DELIVERIES.c.delivered_at < end)
        .group_by(day_d, DELIVERIES.c.product_code)
    ).all()
    day_j = func.substr(func.cast(JOURNAL.c.created_at, String), 1, 10)
    dispensed = conn.execute(
        select(day_j, JOURNAL.c.product_code, func.sum(JOURNAL.c.quantity_qty))
        .where(JOURNAL.c.point_code == point_code, JOURNAL.c.result == "ok",
               JOURNAL.c.kind.in_(["redeem", "post", "reverse", "walk_in"]),
               JOURNAL.c.created_at >= start, JOURNAL.c.created_at < end)
        .group_by(day_j, JOURNAL.c.product_code)
    ).all()
    return ([(str(d), str(p), int(q)) for d, p, q in delivered],
            [(str(d), str(p), int(q)) for d, p, q in dispensed])


# Seals ------------------------------------------------------------------------------------------
def last_seal(conn: Connection) -> tuple[int, str]:
    """(last sealed seq, its seal hash), or (0, genesis) before the first seal."""
    query = select(SEALS.c.last_seq, SEALS.c.seal_hash).order_by(SEALS.c.id.desc()).limit(1)
    row = conn.execute(query).first()
    return (0, "0" * 64) if row is None else (int(row[0]), str(row[1]))


def insert_seal(conn: Connection, seal: Seal, at: datetime) -> None:
    conn.execute(
        insert(SEALS),
        [{"first_seq": seal.first_seq, "last_seq": seal.last_seq, "entry_count": seal.entry_count,
          "entries_hash": seal.entries_hash, "prev_hash": seal.prev_hash, "seal_hash": seal.seal_hash,
          "sealed_at": at}],
    )
    seal_id = conn.execute(select(func.max(SEALS.c.id))).scalar_one()
    conn.execute(
        update(SEAL_DIGESTS).where(SEAL_DIGESTS.c.id == seal_id)
        .values(digests=json.dumps([[s, d] for s, d in seal.digests]))
    )


def all_seals(conn: Connection) -> list[Seal]:
    rows = conn.execute(
        text("SELECT id, first_seq, last_seq, entry_count, entries_hash, prev_hash, seal_hash, digests "
             "FROM seals ORDER BY id")
    )
    return [
        Seal(first_seq=int(r[1]), last_seq=int(r[2]), entry_count=int(r[3]), entries_hash=r[4],
             prev_hash=r[5], seal_hash=r[6], id=int(r[0]),
             digests=tuple((int(s), str(d)) for s, d in json.loads(r[7] or "[]")))
        for r in rows
    ]


def lock_sealing(conn: Connection) -> None:
    """Serialise sealers (PostgreSQL advisory lock for the transaction; SQLite has one writer)."""
    if _is_pg(conn):
        conn.execute(text("SELECT pg_advisory_xact_lock(727001)"))


def committed_watermark(conn: Connection) -> int:
    """The highest seq below which every journal row is committed or rolled back.

    Seqs are handed out at INSERT but groups commit in any order, so a sealer must not read past a
    row still in flight. A SHARE lock waits for every inserting transaction to end and is held only
    for this one statement's transaction (the caller commits at once).
    """
    if _is_pg(conn):
        conn.execute(text("LOCK TABLE journal IN SHARE MODE"))
    return int(conn.execute(select(func.coalesce(func.max(JOURNAL.c.seq), 0))).scalar_one())


def begin_write(conn: Connection) -> None:
    """On SQLite take the write lock up front: a read that later upgrades can fail with SQLITE_BUSY."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def reversal_of(conn: Connection, ref_entry_id: str) -> str | None:
    """The entry id of the successful reversal of an entry, if any (a debit is reversed once)."""
    row = conn.execute(
        select(JOURNAL.c.entry_id).where(
            JOURNAL.c.ref_entry_id == ref_entry_id, JOURNAL.c.kind == "reverse", JOURNAL.c.result == "ok"
        )
    ).first()
    return None if row is None else str(row[0])


def point_code_of(conn: Connection, point_id: int) -> str | None:
    row = conn.execute(text("SELECT code FROM points WHERE id = :id"), {"id": point_id}).first()
    return None if row is None else str(row[0])


# Messages (the journal is the outbox) -----------------------------------------------------------
def lock_cursor(conn: Connection, name: str) -> int:
    """The sender's saved journal position, locked so one collector advances it at a time."""
    c = MESSAGE_CURSORS
    query = select(c.c.last_seq).where(c.c.name == name)
    if _is_pg(conn):
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


def due_messages(conn: Connection, channel: str, now: datetime, limit: int) -> list[dict[str, Any]]:
    m = MESSAGES
    query = (
        select(m).where(m.c.channel == channel, m.c.state == "pending", m.c.next_attempt_at <= now)
        .order_by(m.c.id).limit(limit)
    )
    if _is_pg(conn):
        query = query.with_for_update(skip_locked=True)
    return [dict(r) for r in conn.execute(query).mappings()]


def mark_message(conn: Connection, message_id: int, **values: Any) -> None:
    conn.execute(update(MESSAGES).where(MESSAGES.c.id == message_id).values(**values))


def message_states(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(select(MESSAGES).order_by(MESSAGES.c.seq)).mappings()]
