"""SQL of the ledger's hot rows: cards, points, allowances, journal entries and holds.

The ledger's SQL lives in this module and its siblings, one concern each: ``group_repository`` (the
three phases of a group commit), ``ledger_pg`` (their PostgreSQL forms), ``stock_repository``,
``seal_repository`` and ``message_repository``. Functions take an open ``Connection`` inside the
caller's transaction and never commit: the engine commits once per group, a service once per use
case. Statements are SQLAlchemy Core over typed tables, so the same code runs on PostgreSQL and on
the embedded SQLite; PostgreSQL-only forms (row locks, JSON-fed group statements) are chosen by
dialect here. Times are written in UTC and read back as aware UTC (SQLite keeps them naive).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast, overload

import psycopg
from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Integer,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    case,
    false,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.exc import DBAPIError

from quota import grant_repository as grants
from quota import ledger_pg as pg
from quota.dialect import is_pg
from quota.domain.audit import AllowanceFigures
from quota.domain.decide import AllowanceState
from quota.models import Allowance, Hold, JournalEntry, StockDelivery
from quota.models import Seal as SealRow

ALLOWANCES = cast(Table, Allowance.__table__)
JOURNAL = cast(Table, JournalEntry.__table__)
HOLDS = cast(Table, Hold.__table__)
DELIVERIES = cast(Table, StockDelivery.__table__)
SEALS = cast(Table, SealRow.__table__)

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


# What a group retries on: SQLAlchemy's wrapped driver errors, and psycopg's own (the PostgreSQL group
# statements run on the raw driver connection, see ``quota.ledger_pg``).
DATABASE_ERRORS: tuple[type[Exception], ...] = (DBAPIError, psycopg.Error)


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite gives it back naive)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Cards and points -------------------------------------------------------------------------------
class CardRow(NamedTuple):
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
    if is_pg(conn):
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


_ACTOR_SUFFIX = re.compile(r" \((?:user|device):[^()]*\)$")


def card_state_reason(conn: Connection, serial: str) -> str | None:
    """Why a card is not active, as its last change of state recorded it, without the staff member or
    device that made the change (points and citizens read it; the audit log keeps who)."""
    reason = conn.execute(text("SELECT state_reason FROM cards WHERE serial = :serial"),
                          {"serial": serial}).scalar()
    return _ACTOR_SUFFIX.sub("", str(reason)) or None if reason else None


def find_points(conn: Connection, codes: Iterable[str]) -> dict[str, frozenset[str]]:
    """Active points by code, with the products each serves."""
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    rows: Iterable[Any]
    if is_pg(conn):
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
    if is_pg(conn):
        states = [AllowanceState(*row) for row in pg.lock_allowances(conn, wanted, now)]
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
    if is_pg(conn):
        query = query.with_for_update(of=a)
    found: dict[HolderKey, AllowanceState] = {}
    for row in conn.execute(query).mappings():
        state = _state(row)
        found[(state.holder_type, state.holder_id, state.product_code)] = state
    return found


def lock_allowance(conn: Connection, allowance_id: int) -> AllowanceState | None:
    query = select(*(ALLOWANCES.c[name] for name in STATE_COLUMNS)).where(ALLOWANCES.c.id == allowance_id)
    if is_pg(conn):
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return None if row is None else _state(row)


def allowance_doc(s: AllowanceState) -> list[Any]:
    """The columns a decision may change, in ``ledger_pg.ALLOWANCE_FIELDS`` order."""
    return [s.id, s.period_start and pg.iso(s.period_start), s.period_end and pg.iso(s.period_end),
            s.granted_qty, s.used_qty, s.held_qty, s.carried_qty, s.topup_qty,
            s.last_redeemed_at and pg.iso(s.last_redeemed_at), s.home_point_code, s.binding_changes]


def write_allowances(conn: Connection, states: Sequence[AllowanceState]) -> None:
    """Write back decided rows: one statement for the whole group."""
    if not states:
        return
    if is_pg(conn):
        pg.update_allowances(conn, [allowance_doc(s) for s in states])
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
    """All the holder's allowances, by product and start; grants not yet touched have id 0."""
    query = (
        select(*(ALLOWANCES.c[name] for name in STATE_COLUMNS))
        .where(ALLOWANCES.c.holder_type == holder_type, ALLOWANCES.c.holder_id == holder_id)
        .order_by(ALLOWANCES.c.product_code, ALLOWANCES.c.period_start)
    )
    states = [_state(row) for row in conn.execute(query).mappings()]
    untouched = [_state(row) for row in grants.holder_rows(conn, holder_type, holder_id)]
    return sorted(states + untouched, key=lambda s: (s.product_code, s.period_start))


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
    if is_pg(conn):
        return {row["entry_id"]: entry_row(row) for row in pg.entries(conn, wanted)}
    rows = conn.execute(select(JOURNAL).where(JOURNAL.c.entry_id.in_(wanted))).mappings()
    return {row["entry_id"]: entry_row(row) for row in rows}


def entry_row(row: Mapping[Any, Any]) -> dict[str, Any]:
    entry = dict(row)
    entry["created_at"] = utc(entry["created_at"])
    return entry


def insert_entries(conn: Connection, entries: Sequence[Mapping[str, Any]]) -> None:
    """Append journal rows: one multi-row INSERT for a group."""
    if entries and is_pg(conn):
        pg.insert_entries(conn, entries)
    elif entries:
        conn.execute(insert(JOURNAL), [dict(e) for e in entries])


def entries_upto(conn: Connection, upto_seq: int, page_size: int = 10_000) -> Iterator[dict[str, Any]]:
    """Every entry with ``seq <= upto_seq`` (any seq below 1 included), in seq order, fetched
    ``page_size`` rows at a time (keyset pages), so a journal of any length streams."""
    after: int | None = None
    while True:
        query = select(JOURNAL).where(JOURNAL.c.seq <= upto_seq).order_by(JOURNAL.c.seq).limit(page_size)
        if after is not None:
            query = query.where(JOURNAL.c.seq > after)
        page = [entry_row(row) for row in conn.execute(query).mappings().all()]
        yield from page
        if len(page) < page_size:
            return
        after = int(page[-1]["seq"])


def entries_page(conn: Connection, after_seq: int, upto_seq: int, limit: int) -> list[dict[str, Any]]:
    """At most ``limit`` entries with ``after_seq < seq <= upto_seq``: gaps in seq do not stop a sealer."""
    query = (
        select(JOURNAL)
        .where(JOURNAL.c.seq > after_seq, JOURNAL.c.seq <= upto_seq)
        .order_by(JOURNAL.c.seq)
        .limit(limit)
    )
    return [entry_row(row) for row in conn.execute(query).mappings()]


def entries_after(conn: Connection, seq: int, kinds: Sequence[str], limit: int) -> list[dict[str, Any]]:
    query = (
        select(JOURNAL)
        .where(JOURNAL.c.seq > seq, JOURNAL.c.kind.in_(list(kinds)), JOURNAL.c.result == "ok")
        .order_by(JOURNAL.c.seq)
        .limit(limit)
    )
    return [entry_row(row) for row in conn.execute(query).mappings()]


def _journal_used() -> Select[Any]:
    """Per allowance, the sum of the successful debits and credits of ``used`` in its current window
    (invariant 2): ``aid``, ``qty``. Top-ups move ``granted``, not ``used``; a rolling row counts from
    its window start. Partial reversals each count their own quantity; a reversal is only ever made in
    the window of its debit, and one of a closed window's debit (``stock_credit``) credits no allowance."""
    owner = ALLOWANCES.alias("owner")
    return (
        select(JOURNAL.c.allowance_id.label("aid"), func.sum(JOURNAL.c.quantity_qty).label("qty"))
        .join(owner, owner.c.id == JOURNAL.c.allowance_id)
        .where(JOURNAL.c.result == "ok", JOURNAL.c.kind.in_(["redeem", "post", "reverse"]),
               JOURNAL.c.created_at >= owner.c.period_start)
        .group_by(JOURNAL.c.allowance_id)
    )


def journal_used_by_allowance(conn: Connection) -> dict[int, int]:
    """What the journal says each allowance has used (``_journal_used``)."""
    return {int(a): int(q) for a, q in conn.execute(_journal_used())}


def _update_waiting(key: HolderKey, now: datetime) -> Update:
    """An UPDATE of the holder's rows that start after ``now`` and nothing has drawn or held from: a
    rolling renewal waiting for the running window to end (``quota.opening``'s refresh), or a period
    opened ahead."""
    a = ALLOWANCES.c
    return update(ALLOWANCES).where(
        a.holder_type == key[0], a.holder_id == key[1], a.product_code == key[2],
        a.period_start > now.astimezone(UTC), a.used_qty == 0, a.held_qty == 0,
    )


def move_pending_home(conn: Connection, key: HolderKey, now: datetime, point_code: str) -> None:
    """Set the home point of the rows waiting to take over, so the station a card moves to stays its
    station."""
    conn.execute(_update_waiting(key, now).values(home_point_code=point_code))


def adopt_pending_homes(conn: Connection, bound: Sequence[tuple[HolderKey, str]], now: datetime) -> None:
    """A card's first station (``bound``: each key and the point it was tied to now) is also the
    station of its rows waiting to take over that have none yet: a rolling renewal the refresh placed
    before the first fill, or a period opened ahead. Without it the next window would bind anew."""
    if not bound:
        return
    if is_pg(conn):
        pg.adopt_pending_homes(conn, [(*key, point) for key, point in sorted(bound)], now)
        return
    for key, point in sorted(bound):
        conn.execute(_update_waiting(key, now).where(ALLOWANCES.c.home_point_code.is_(None))
                     .values(home_point_code=point))


def start_pending_renewal(conn: Connection, key: HolderKey, now: datetime) -> None:
    """Let a waiting rolling renewal (no window of its own yet) take over at ``now``."""
    conn.execute(_update_waiting(key, now).where(ALLOWANCES.c.period_end.is_(None))
                 .values(period_start=now.astimezone(UTC)))


DEBIT_KINDS = ("redeem", "post", "reverse")
"""The movements of ``used``: fills and their reversals (a top-up moves ``granted``)."""
WINDOW_KINDS = ("redeem", "hold", "topup", "rebind")
"""The movements that may set a rolling row's window start, at their own time: a fill or a hold opens
or restarts the window (``decide.current_window``), a top-up or a change of station closes an ended one
(``decide.close_ended_window``)."""


def allowance_rule_versions(conn: Connection) -> list[int]:
    """The rule versions the allowance rows hold (``reconcile`` asks their terms which have one period)."""
    return [int(v) for v in conn.scalars(select(ALLOWANCES.c.rule_version_id).distinct())]


def allowances_off_the_journal(
    conn: Connection, limit: int, one_period_versions: Sequence[int] = ()
) -> list[AllowanceFigures]:
    """Allowance rows whose ``used`` differs from their journal, whose ``held`` differs from their pending
    holds, that are overdrawn, or whose ``period_start`` the journal does not explain; and allowance ids
    no row has that the journal's debits (or pending holds) do not net to zero on. By id, at most
    ``limit`` (``quota.domain.audit``).

    Rows of ``one_period_versions`` (calendar, seasonal) count every debit journalled against them; other
    rows (rolling) count from their window start, which must be the time of an ``ok`` movement of the row
    that sets it (``WINDOW_KINDS``) unless no debit of the row precedes it. Where it is not, the window
    the journal explains starts at the row's latest such movement before ``period_start``, and ``used``
    is checked from there (two correlated lookups through the journal's holder index, for those rows only).

    One statement (the journal is read once, aggregated per allowance id), so on PostgreSQL both sides
    come from one snapshot and a group committing meanwhile cannot make a row look off."""
    a, j, owner = ALLOWANCES, JOURNAL, ALLOWANCES.alias("owner")
    versions = list(one_period_versions)

    def one_period(row: Any) -> ColumnElement[bool]:
        return row.c.rule_version_id.in_(versions) if versions else false()

    debit = j.c.kind.in_(DEBIT_KINDS)
    gone = owner.c.id.is_(None)

    def if_gone(value: ColumnElement[Any]) -> ColumnElement[Any]:  # aggregated for missing rows only
        return case((gone, value))

    # one pass over the journal, as narrow as it can be (its aggregate is what the audit costs)
    moves = (
        select(
            j.c.allowance_id.label("aid"),
            func.count(owner.c.id).label("rows"),
            # what the journal says ``used`` is: every debit of a calendar row (or a missing one), those
            # of a rolling row's window (from ``period_start``: checked below where that start is moved)
            func.sum(case((and_(debit, or_(gone, one_period(owner), j.c.created_at >= owner.c.period_start)),
                           j.c.quantity_qty), else_=0)).label("counted"),
            func.min(case((and_(debit, j.c.created_at < owner.c.period_start), j.c.created_at)))
            .label("first_before"),
            func.max(case((and_(j.c.kind.in_(WINDOW_KINDS), j.c.created_at == owner.c.period_start), 1),
                          else_=0)).label("opened"),
            func.min(if_gone(j.c.holder_type)).label("holder_type"),
            func.min(if_gone(j.c.holder_id)).label("holder_id"),
            func.min(if_gone(j.c.product_code)).label("product_code"),
            func.min(if_gone(j.c.created_at)).label("first_at"),
        )
        .select_from(j.outerjoin(owner, owner.c.id == j.c.allowance_id))
        .where(j.c.result == "ok", j.c.kind.in_(sorted({*DEBIT_KINDS, *WINDOW_KINDS})),
               j.c.allowance_id.is_not(None))
        .group_by(j.c.allowance_id)
        .cte("moves")
    )
    holds = (
        select(HOLDS.c.allowance_id.label("aid"), func.sum(HOLDS.c.reserved_qty).label("qty"))
        .where(HOLDS.c.state == "pending")
        .group_by(HOLDS.c.allowance_id)
        .cte("pending_holds")
    )
    held_by_holds = func.coalesce(holds.c.qty, 0)

    # the rows: a calendar row counts all its debits; a rolling row those from its window start
    moved = and_(moves.c.first_before.is_not(None), or_(one_period(a), moves.c.opened == 0))
    o, d = JOURNAL.alias("o"), JOURNAL.alias("d")
    journal_start = (
        select(func.max(o.c.created_at))
        .where(o.c.holder_id == a.c.holder_id, o.c.allowance_id == a.c.id, o.c.result == "ok",
               o.c.kind.in_(WINDOW_KINDS), o.c.created_at <= a.c.period_start)
        .correlate(a)
        .scalar_subquery()
    )
    used_since_start = (
        select(func.coalesce(func.sum(d.c.quantity_qty), 0))
        .where(d.c.holder_id == a.c.holder_id, d.c.allowance_id == a.c.id, d.c.result == "ok",
               d.c.kind.in_(DEBIT_KINDS), d.c.created_at >= journal_start)
        .correlate(a)
        .scalar_subquery()
    )
    rolling_moved = and_(moved, ~one_period(a))
    used_by_journal = case((rolling_moved, used_since_start), else_=func.coalesce(moves.c.counted, 0))
    window_start = case((rolling_moved, journal_start), (moved, moves.c.first_before), else_=null())
    rows = (
        select(a.c.id.label("id"), a.c.holder_type.label("holder_type"), a.c.holder_id.label("holder_id"),
               a.c.product_code.label("product_code"), a.c.period_start.label("period_start"),
               a.c.granted_qty.label("granted_qty"), a.c.used_qty.label("used_qty"),
               a.c.held_qty.label("held_qty"), used_by_journal.label("journal_qty"),
               held_by_holds.label("pending_qty"), window_start.label("window_start"),
               literal(1, Integer).label("row_exists"))
        .select_from(a.outerjoin(moves, moves.c.aid == a.c.id).outerjoin(holds, holds.c.aid == a.c.id))
        .where(or_(moved, a.c.used_qty != used_by_journal, a.c.held_qty != held_by_holds, a.c.used_qty < 0,
                   a.c.held_qty < 0, a.c.used_qty + a.c.held_qty > a.c.granted_qty))
    )
    # the debits whose row is gone (re-keyed, deleted)
    missing = (
        select(moves.c.aid, moves.c.holder_type, moves.c.holder_id, moves.c.product_code, moves.c.first_at,
               literal(0, Integer), literal(0, Integer), literal(0, Integer), moves.c.counted, held_by_holds,
               null(), literal(0, Integer))
        .select_from(moves.outerjoin(holds, holds.c.aid == moves.c.aid))
        .where(moves.c.rows == 0, or_(moves.c.counted != 0, held_by_holds != 0))
    )
    both = union_all(rows, missing).subquery("off")
    found = conn.execute(select(both).order_by(both.c.id).limit(limit)).all()
    return [AllowanceFigures(int(r[0]), str(r[1]), int(r[2]), str(r[3]), cast(datetime, _when(r[4])),
                             int(r[5]), int(r[6]), int(r[7]), int(r[8]), int(r[9]), _when(r[10]), bool(r[11]))
            for r in found]


def _when(value: Any) -> datetime | None:
    """A time read back from a compound statement (SQLite may hand a string of it back)."""
    if value is None or isinstance(value, datetime):
        return utc(value)
    return utc(datetime.fromisoformat(str(value)))


def count_allowances(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(ALLOWANCES)).scalar_one())


FAMILY_KINDS = ("redeem", "post", "reverse", "stock_credit", "topup", "withdrawal")
"""The movements of its allowances a family sees in its history and is messaged about."""
_FAMILY_KINDS_SQL = ", ".join(f"'{kind}'" for kind in FAMILY_KINDS)


def family_draws(conn: Connection, family_id: int, limit: int) -> list[dict[str, Any]]:
    """Who (card, its holder) drew what and where from a family's allowances, newest first."""
    rows = conn.execute(
        text(
            "SELECT j.seq, j.entry_id, j.kind, j.product_code, j.quantity_qty, j.point_code, "
            "j.card_serial, c.holder_type AS card_holder_type, c.holder_id AS card_holder_id, "
            "j.remaining_qty, j.created_at FROM journal j LEFT JOIN cards c ON c.serial = j.card_serial "
            "WHERE j.holder_type = 'family' AND j.holder_id = :family AND j.result = 'ok' "
            f"AND j.kind IN ({_FAMILY_KINDS_SQL}) ORDER BY j.seq DESC LIMIT :limit"
        ).columns(created_at=DateTime(timezone=True)),
        {"family": family_id, "limit": limit},
    ).mappings()
    return [entry_row(row) for row in rows]


# Holds ------------------------------------------------------------------------------------------
def insert_hold(conn: Connection, hold: Mapping[str, Any]) -> None:
    conn.execute(insert(HOLDS), [dict(hold)])


def lock_hold(conn: Connection, hold_id: str) -> dict[str, Any] | None:
    query = select(HOLDS).where(HOLDS.c.id == hold_id)
    if is_pg(conn):
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        return None
    hold = dict(row)
    hold["expires_at"] = utc(hold["expires_at"])
    return hold


def pending_hold_qty(conn: Connection, point_code: str, product_code: str, now: datetime) -> int:
    """What the unexpired pending holds at a point reserve of a product (stock they set aside)."""
    a = ALLOWANCES
    query = (
        select(func.coalesce(func.sum(HOLDS.c.reserved_qty), 0))
        .select_from(HOLDS.join(a, a.c.id == HOLDS.c.allowance_id))
        .where(HOLDS.c.point_code == point_code, HOLDS.c.state == "pending", HOLDS.c.expires_at > now,
               a.c.product_code == product_code)
    )
    return int(conn.execute(query).scalar_one())


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


def begin_write(conn: Connection) -> None:
    """On SQLite take the write lock up front: a read that later upgrades can fail with SQLITE_BUSY."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


REVERSAL_KINDS = ("reverse", "stock_credit", "withdrawal")
"""Journal kinds that undo (part of) the entry they refer to: ``reverse`` credits a debit back to the
allowance, the point's stock and the money; ``stock_credit`` (the debit's window had closed) the stock and
the money only; ``withdrawal`` takes back (part of) a top-up granted in error."""
FILL_KINDS = ("redeem", "post")


class Reversed(NamedTuple):
    """What the successful reversals of one debit add up to so far."""

    quantity_qty: int  # credited back, in all (positive)
    refunded_minor: int  # paid back, in all (positive)


def reversals_of(conn: Connection, ref_entry_id: str) -> Reversed:
    """The sums of the successful reversals of a debit (several partial ones may follow each other):
    one lookup on ``ix_journal_reversal``."""
    j = JOURNAL.c
    row = conn.execute(
        select(func.coalesce(-func.sum(j.quantity_qty), 0), func.coalesce(-func.sum(j.price_minor), 0))
        .where(j.ref_entry_id == ref_entry_id, j.kind.in_(REVERSAL_KINDS), j.result == "ok")
    ).one()
    return Reversed(int(row[0]), int(row[1]))


def _live_fill() -> ColumnElement[bool]:
    """A journal row (``JOURNAL``) that is an ``ok`` fill of a quantity its allowance reversals have not
    wholly credited back: a correlated lookup on ``ix_journal_reversal``."""
    j, r = JOURNAL.c, JOURNAL.alias("r").c
    credited = (
        select(func.coalesce(-func.sum(r.quantity_qty), 0))
        .where(r.ref_entry_id == j.entry_id, r.kind == "reverse", r.result == "ok")
        .scalar_subquery()
    )
    return and_(j.result == "ok", j.kind.in_(FILL_KINDS), j.quantity_qty > credited)


def latest_live_fill(
    conn: Connection, key: HolderKey, allowance_id: int, since: datetime, excluding: str
) -> tuple[int, datetime] | None:
    """(seq, time) of the latest live fill of an allowance made at ``since`` or later (its window), other
    than entry ``excluding``; one backward walk of the holder's rows on ``ix_journal_holder``."""
    j = JOURNAL.c
    row = conn.execute(
        select(j.seq, j.created_at)
        .where(j.holder_id == key[1], j.holder_type == key[0], j.product_code == key[2],
               j.allowance_id == allowance_id, j.created_at >= since, j.entry_id != excluding, _live_fill())
        .order_by(j.seq.desc())
        .limit(1)
    ).first()
    return None if row is None else (int(row[0]), utc(row[1]))


def bound_otherwise(conn: Connection, key: HolderKey, excluding: str) -> bool:
    """Whether anything but entry ``excluding`` ties the holder to a station for the product: another
    live fill, in any period (a new period's row inherits the station), or a change of station."""
    j = JOURNAL.c
    row = conn.execute(
        select(j.seq)
        .where(j.holder_id == key[1], j.holder_type == key[0], j.product_code == key[2],
               j.entry_id != excluding, or_(and_(j.kind == "rebind", j.result == "ok"), _live_fill()))
        .limit(1)
    ).first()
    return row is not None


def unbind_pending(conn: Connection, key: HolderKey, now: datetime, point_code: str) -> None:
    """Untie the rows waiting to take over (``adopt_pending_homes`` gave them the card's first station)
    from ``point_code``, when the fill that first tied the card there is reversed."""
    conn.execute(_update_waiting(key, now).where(ALLOWANCES.c.home_point_code == point_code)
                 .values(home_point_code=None))


def point_code_of(conn: Connection, point_id: int) -> str | None:
    row = conn.execute(text("SELECT code FROM points WHERE id = :id"), {"id": point_id}).first()
    return None if row is None else str(row[0])
