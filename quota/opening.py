"""Opening a period: every holder's allowance for every current rule, computed and bulk-loaded.

The population is read as columns, entitlement is computed with numpy, and the rows are loaded in
bulk (binary COPY on PostgreSQL). Each row keeps the ``rule_version_id`` it was opened with, so an
edit made afterwards (a new version) does not change an opened period.

Opening is safe to repeat: a period already opened for a product is only topped up with holders who
have no row yet (new families, a car bought mid-month). Unused quantity of the previous period is
carried over or converted to points here, only for rows being created, so a repeat never credits
twice. Periods are opened by a daily job (bread is per day) or by an administrator.

A rolling product already opened is *refreshed* instead (``_refresh``, once a local day by the
worker's ``open_due``, and by every administrator's opening): each holder's next window is computed
as a first opening would and compared with its latest allowance (row or grant). New holders get one;
where the version, the amount or eligibility differs, a renewal row starts where it may take over —
the end of the running window (which keeps what it was opened with), else now; an untouched or
pending one is changed in place rather than stacked. Holders whose rule has ended get a renewal that
grants nothing (``ended_rolling``). A refresh that changes nothing writes no allowance rows; each is
recorded in ``period_openings`` (start = the local day), which is what makes it due once a day.

The caller owns the transaction (one unit of work): nothing is committed here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from quota import grant_repository, population, rules_repository
from quota import opening_repository as repo
from quota.domain import entitlement, unused
from quota.domain.eligibility import BoolArray, HolderColumns, IntArray
from quota.domain.periods import UTC, previous_window, window
from quota.domain.rules import PeriodSpec, Rule
from quota.models import Product


@dataclass(frozen=True, slots=True)
class OpenedRule:
    rule_code: str
    rule_version_id: int
    holder_type: str
    product: str
    period_start: datetime
    period_end: datetime | None
    rows: int
    topped_up: bool
    carried_qty: int
    points: int


@dataclass(frozen=True, slots=True)
class DeferredRule:
    """A rule an opening ahead of its period left to the day the period begins (the worker opens it
    then): ``reason`` is ``previous_period_running`` (its carry-over or points come from a period
    still being drawn) or ``rolling_opens_on_its_day`` (rolling allowances follow the registry day by
    day)."""

    rule_code: str
    rule_version_id: int
    holder_type: str
    product: str
    reason: str


@dataclass
class OpeningReport:
    at: datetime
    opened: list[OpenedRule] = field(default_factory=list)
    deferred: list[DeferredRule] = field(default_factory=list)
    points_rows: int = 0
    seconds: float = 0.0
    read_s: float = 0.0  # population columns from the registry
    load_s: float = 0.0  # bulk load of the new rows

    @property
    def rows(self) -> int:
        return sum(o.rows for o in self.opened) + self.points_rows


def at_of(period_key: str, tz: ZoneInfo = UTC) -> datetime:
    """``2026-11`` → 1 Nov 2026 00:00, ``2026-11-18`` → that day, in the deployment's zone."""
    parts = [int(x) for x in period_key.split("-")]
    if len(parts) == 2:
        parts.append(1)
    if len(parts) != 3:
        raise ValueError(f"period key {period_key!r} is not YYYY-MM or YYYY-MM-DD")
    return datetime(parts[0], parts[1], parts[2], tzinfo=tz)


@dataclass
class _Points:
    """Points credited per (holder type, points product): holder ids and amounts, summed at the end."""

    rule_version_id: int
    ids: list[IntArray] = field(default_factory=list)
    points: list[IntArray] = field(default_factory=list)


def carry_over(
    conn: Connection,
    res: entitlement.RuleResult,
    ids: IntArray,
    price_per_qty: int,
    tz: ZoneInfo,
    runs: grant_repository.RunCache,
) -> unused.Rollover | None:
    """Roll the previous period's unused first tier onto the holders being opened now (read only:
    simulate shows it too)."""
    rule = res.rule
    prev = previous_window(rule.period, res.window, tz)
    if rule.unused.policy == "expire" or prev is None:
        return None
    if not repo.openings(conn, rule.holder_type, rule.product, prev.start):
        return None
    hid, base, carried, topup, used, held = repo.previous_rows(
        conn, rule.holder_type, rule.product, prev.start, runs
    )
    left = unused.unused_first_tier(base, carried, topup, used, held)
    pos = population.positions(hid, ids)
    found = pos >= 0
    per_holder = np.where(found, left[np.maximum(pos, 0)], 0).astype(np.int64)
    return unused.rollover(rule.unused, per_holder, price_per_qty)


def open_period(
    session: Session,
    at: datetime | None = None,
    period_key: str | None = None,
    rules: Sequence[tuple[int, Rule]] | None = None,
    governorates: tuple[str, ...] = (),
    tz: ZoneInfo = UTC,
    opened_by: str = "",
    populations: dict[str, HolderColumns] | None = None,
    ended: Sequence[tuple[tuple[str, str], tuple[str, int]]] = (),
    now: datetime | None = None,
) -> OpeningReport:
    """Open, at ``at`` (or the start of ``period_key``), every current rule's period, and refresh the
    rolling allowances already opened (see the module docstring).

    Opened ahead — ``at`` on a later local day than ``now`` (default: ``at``, else the clock; an
    administrator's opening passes the clock) — a rule is left to
    its day (``OpeningReport.deferred``; the worker opens it when the period begins) when what it
    writes depends on days still to come: a rule carrying unused quantity over (or converting it to
    points) from a period still being drawn, whose unused part is not known yet; and a rolling rule,
    whose allowances follow the registry day by day (a refresh recorded under a later day would also
    stop the daily ones until then). Nothing of them is written or recorded.

    ``rules`` are (rule_version_id, rule) pairs; by default the versions in force that day, and then
    the rolling products whose rules have all ended are refreshed too (``ended``: (holder type,
    product) → (rule code, version) of their last opening, as ``ended_rolling`` returns them).
    ``populations`` may be passed by a caller that already holds them (the benchmark, a test).
    """
    started = time.perf_counter()
    when = at or (at_of(period_key, tz) if period_key else datetime.now(tz))
    clock = now or at or datetime.now(UTC)  # a caller naming ``at`` alone opens as of that moment
    ahead = _slot(when, tz) > _slot(clock, tz)
    day: date = when.astimezone(tz).date()
    conn = session.connection()
    repo.lock_openings(conn)  # two openers (a worker, an administrator) take turns: the second tops up
    chosen = list(rules) if rules is not None else rules_repository.current(session, day)
    in_force = rules_repository.current(session, day) if rules is not None else []
    context = _context(in_force, chosen, ended)
    version_of = {r.code: vid for vid, r in chosen}
    writes = set(version_of)
    # Points go to the allowance of the points product's own rule in force when there is one (its terms
    # then govern spending: the demo's costs nothing in cash), due that day or not; otherwise they carry
    # the version of the rule that converted them.
    points_rule = {(r.holder_type, r.product): vid for vid, r in [*in_force, *chosen]}
    prices = {p.code: p.price_per_qty for p in session.scalars(select(Product))}
    if populations is None:
        govs = governorates or population.governorates_in(conn)
        plain = [r for _, r in chosen + context]
        types = {r.holder_type for r in plain}
        populations = population.load(conn, types, day, govs, ages=entitlement.needs_member_ages(plain))
    read_s = time.perf_counter() - started
    report = OpeningReport(at=when)
    fresh: list[repo.Rows] = []
    points: dict[tuple[str, str], _Points] = {}
    fresh_of: list[int | None] = []  # per opened rule, its index in ``fresh`` (None: topped up)
    runs: grant_repository.RunCache = {}  # grant runs read back once for all the rules
    refresh: dict[tuple[str, str], list[tuple[int, entitlement.RuleResult]]] = {}
    calendar: dict[tuple[str, str], list[entitlement.RuleResult]] = {}
    for res in entitlement.compute([r for _, r in chosen + context], populations, when, tz):
        rule, mask = res.rule, res.allotted
        key = (rule.holder_type, rule.product)
        if rule.code not in writes:  # a rule in force but not due: it only shadows and takes holders
            if rule.period.kind != "rolling":
                calendar.setdefault(key, []).append(res)
            continue
        reason = _deferred_reason(rule, res, clock, tz) if ahead else None
        if reason is not None:
            report.deferred.append(DeferredRule(rule.code, version_of[rule.code], rule.holder_type,
                                                rule.product, reason))
            if rule.period.kind != "rolling":
                calendar.setdefault(key, []).append(res)  # still serves its holders (priority)
            continue
        if rule.period.kind == "rolling":
            if repo.openings(conn, rule.holder_type, rule.product, None):
                refresh.setdefault(key, []).append((version_of[rule.code], res))  # below, per product
                continue
        else:
            calendar.setdefault(key, []).append(res)
        ids = res.cols.ids
        # Whole-population arrays (0 where not allotted: base and granted are 0 where not eligible):
        # grants store them as they are; every other writer takes ``compact()`` rows.
        roll = carry_over(conn, res, ids, prices.get(rule.product, 1), tz, runs)
        carried = np.where(mask, roll.carried_qty, 0) if roll is not None else np.zeros_like(ids)
        granted = res.granted_qty + carried if roll is not None else res.granted_qty
        rows = repo.Rows(
            rule.holder_type,
            rule.product,
            version_of[rule.code],
            res.window.start,
            res.window.end,
            ids,
            res.base_qty,
            granted,
            carried,
            allotted=mask,
        )
        points_of = roll.points[mask] if roll is not None else np.zeros(0, np.int64)
        seen = rule.period.kind != "rolling" and repo.openings(
            conn, rule.holder_type, rule.product, res.window.start
        )
        if seen:
            rows = rows.compact()
            present = repo.existing_holders(conn, rows, cache=runs)
            keep = ~np.isin(rows.holder_ids, present)
            rows = rows.subset(keep)
            repo.insert_missing(conn, rows)
            pts = points_of[keep] if roll is not None else points_of
            fresh_of.append(None)
        else:
            fresh_of.append(len(fresh))
            fresh.append(rows)
            pts = points_of
        if pts.any():
            pkey = (rule.holder_type, rule.unused.points_product)
            acc = points.setdefault(pkey, _Points(points_rule.get(pkey, rows.rule_version_id)))
            acc.ids.append(rows.compact().holder_ids)
            acc.points.append(pts)
        opened = OpenedRule(
            rule.code,
            rows.rule_version_id,
            rule.holder_type,
            rule.product,
            res.window.start,
            res.window.end,
            rows.n,
            bool(seen),
            int(rows.carried_qty.sum()),
            int(pts.sum()),
        )
        report.opened.append(opened)
    day_start = _slot(when, tz)
    if rules is None and not ahead:
        ended = ended_rolling(session, when, tz)
    for (holder_type, product), members in refresh.items():
        taken = [r.allotted for r in calendar.get((holder_type, product), [])]
        written = _refresh(session, holder_type, product, members, taken, when, day_start, runs)
        for (vid, res), n in zip(members, written, strict=True):
            report.opened.append(
                OpenedRule(res.rule.code, vid, holder_type, product, day_start, None, n, True, 0, 0)
            )
            fresh_of.append(None)
    for (holder_type, product), (code, vid) in ended:
        # holders a calendar rule of the product now serves keep it: a zero renewal would hide it
        served = calendar.get((holder_type, product), [])
        (n,) = _refresh(session, holder_type, product, [], [r.allotted for r in served], when, day_start,
                        runs, served[0].cols.ids if served else None)
        report.opened.append(OpenedRule(code, vid, holder_type, product, day_start, None, n, True, 0, 0))
        fresh_of.append(None)
    loading = time.perf_counter()
    now = datetime.now(UTC)
    stored = repo.insert_new(conn, fresh, now)
    load_s = time.perf_counter() - loading
    for o, index in zip(report.opened, fresh_of, strict=True):
        run_id, slot = stored.get(index, (None, None)) if index is not None else (None, None)
        repo.record_opening(
            conn,
            holder_type=o.holder_type,
            product_code=o.product,
            rule_code=o.rule_code,
            rule_version_id=o.rule_version_id,
            period_start=o.period_start,
            period_end=o.period_end,
            rows=o.rows,
            carried_qty=o.carried_qty,
            points=o.points,
            opened_at=now,
            opened_by=opened_by,
            run_id=run_id,
            slot=slot,
        )
    report.points_rows = _credit_points(conn, points, when, tz)
    report.seconds = time.perf_counter() - started
    report.read_s, report.load_s = read_s, load_s
    return report


def _context(
    in_force: Sequence[tuple[int, Rule]],
    chosen: Sequence[tuple[int, Rule]],
    ended: Sequence[tuple[tuple[str, str], tuple[str, int]]],
) -> list[tuple[int, Rule]]:
    """The rules in force that are not being opened but share a holder type and product with one that
    is (or with an ended rolling product): priority is decided among all of them, so a family a
    higher-priority weekly sugar rule serves is not also given the monthly sugar that falls due, and
    holders a calendar rule serves are left out of a rolling refresh."""
    keys = {(r.holder_type, r.product) for _, r in chosen} | {key for key, _ in ended}
    codes = {r.code for _, r in chosen}
    return [(vid, r) for vid, r in in_force if (r.holder_type, r.product) in keys and r.code not in codes]


def _deferred_reason(rule: Rule, res: entitlement.RuleResult, now: datetime, tz: ZoneInfo) -> str | None:
    """Why an opening ahead leaves ``rule`` to its day (``open_period``), or None."""
    if rule.period.kind == "rolling":
        return "rolling_opens_on_its_day"
    if rule.unused.policy != "expire":
        prev = previous_window(rule.period, res.window, tz)
        if prev is not None and (prev.end is None or prev.end > now):
            return "previous_period_running"
    return None


def _slot(at: datetime, tz: ZoneInfo) -> datetime:
    """The start of the local day of ``at``: rolling allowances are refreshed once per slot."""
    day = window(PeriodSpec(kind="day"), at, tz)
    assert day is not None
    return day.start


def due_rules(session: Session, at: datetime, tz: ZoneInfo = UTC) -> list[tuple[int, Rule]]:
    """Rules in force at ``at`` whose period serving ``at`` nobody has opened yet (a seasonal rule
    between seasons is not due), and the rolling rules whose product was not opened or refreshed
    since the start of ``at``'s local day."""
    conn = session.connection()
    due: list[tuple[int, Rule]] = []
    slot = _slot(at, tz)
    for vid, rule in rules_repository.current(session, at.astimezone(tz).date()):
        current = window(rule.period, at, tz)
        if current is None:
            continue
        if rule.period.kind == "rolling":
            opened = repo.openings(conn, rule.holder_type, rule.product, None, since=slot, rolling=True)
        else:
            opened = repo.openings(conn, rule.holder_type, rule.product, current.start)
        if not opened:
            due.append((vid, rule))
    return due


def _rolling_live(session: Session, day: date) -> set[tuple[str, str]]:
    return {(r.holder_type, r.product) for _, r in rules_repository.current(session, day)
            if r.period.kind == "rolling"}


def ended_rolling(
    session: Session, at: datetime, tz: ZoneInfo = UTC
) -> list[tuple[tuple[str, str], tuple[str, int]]]:
    """Products once opened with a rolling rule that has no rolling rule in force at ``at`` any more
    (its end date passed), not yet refreshed today: their holders' next windows grant nothing.

    Once a refresh made after the end wrote nothing, every holder has had its last window placed and
    the product is left alone (it was read in full every day, for ever); a rolling rule of it coming
    back makes it live again."""
    conn = session.connection()
    live = _rolling_live(session, at.astimezone(tz).date())
    slot = _slot(at, tz)
    ended: list[tuple[tuple[str, str], tuple[str, int]]] = []
    for key, last in repo.rolling_products(conn).items():
        if key in live or repo.openings(conn, key[0], key[1], None, since=slot):
            continue
        if last.rows == 0 and key not in _rolling_live(session, last.slot.astimezone(tz).date()):
            continue  # the last refresh was already one after the end, and it changed nothing
        ended.append((key, (last.rule_code, last.rule_version_id)))
    return ended


def open_due(
    session: Session, at: datetime, governorates: tuple[str, ...] = (), tz: ZoneInfo = UTC
) -> OpeningReport | None:
    """Open the periods that have begun since the last opening (the worker's daily bread, a new week
    or month) and refresh the rolling allowances once a day; None when there is nothing to do. Safe
    beside another opener."""
    repo.lock_openings(session.connection())
    due = due_rules(session, at, tz)
    ended = ended_rolling(session, at, tz)
    if not due and not ended:
        return None
    return open_period(
        session, at=at, rules=due, governorates=governorates, tz=tz, opened_by="worker", ended=ended
    )


def _refresh(
    session: Session,
    holder_type: str,
    product: str,
    members: Sequence[tuple[int, entitlement.RuleResult]],
    calendar_taken: Sequence[BoolArray],
    when: datetime,
    slot: datetime,
    runs: grant_repository.RunCache,
    population_ids: IntArray | None = None,
) -> list[int]:
    """Refresh one rolling product: new holders get an allowance, holders whose next window differs
    (another version or amount, eligibility lost or regained) get a renewal row. ``members`` are the
    product's rolling rules with their results over the population (none: every rolling rule of the
    product has ended; ``population_ids`` then orders ``calendar_taken``, the holders calendar rules
    of the product serve, who are left alone). Returns the rows written per member (the one entry
    for an ended product)."""
    conn = session.connection()
    rows = repo.product_rows(conn, holder_type, product)
    granted = grant_repository.product_grants(conn, holder_type, product, runs)
    seen = np.unique(np.concatenate((rows.rule_version_ids, granted.rule_version_ids)))
    kinds = rules_repository.by_ids(session, [int(v) for v in seen])
    rolling = np.array(
        sorted({v for v, r in kinds.items() if r.period.kind == "rolling"} | {v for v, _ in members}),
        dtype=np.int64,
    )
    target: _Target | None = None
    if members:
        cols = members[0][1].cols
        n = cols.n
        version = np.zeros(n, dtype=np.int64)
        base = np.zeros(n, dtype=np.int64)
        given = np.zeros(n, dtype=np.int64)
        for vid, res in members:  # an earlier rule shadows a later one: the masks never overlap
            m = res.allotted
            version[m], base[m], given[m] = vid, res.base_qty[m], res.granted_qty[m]
        taken = np.zeros(n, dtype=bool)
        for mask in calendar_taken:
            taken |= mask
        has = (given > 0) & ~taken
        target = _Target(cols.ids, has, version, base, given, cols.ids[taken])
    elif population_ids is not None and calendar_taken:
        n = len(population_ids)
        taken = np.logical_or.reduce(list(calendar_taken))
        zero = np.zeros(n, dtype=np.int64)
        target = _Target(population_ids, np.zeros(n, dtype=bool), zero, zero, zero, population_ids[taken])
    writes = _plan(
        holder_type, product, rows, granted, rolling, target,
        grant_repository.epoch_us(when), grant_repository.epoch_us(slot),
    )  # fmt: skip
    repo.write_rolling(conn, writes)
    if not members:
        return [writes.n]
    versions = np.concatenate((writes.new_versions, writes.set_versions))
    counts = [int(np.count_nonzero(versions == vid)) for vid, _ in members]
    counts[0] += writes.n - sum(counts)  # zero rows keep the version they end; drops count here
    return counts


@dataclass(frozen=True)
class _Target:
    """What the rules give each holder of the population now (ids as the population orders them)."""

    ids: IntArray
    has: BoolArray  # gets an allowance of this product under a rolling rule
    version: IntArray
    base_qty: IntArray
    granted_qty: IntArray
    elsewhere: IntArray  # holders a calendar rule of the same product serves: left alone


def _find(keys: IntArray, wanted: IntArray) -> tuple[IntArray, BoolArray]:
    """Positions of ``wanted`` in the sorted, unique ``keys`` and whether each is there."""
    if not len(keys):
        return np.zeros(len(wanted), dtype=np.int64), np.zeros(len(wanted), dtype=bool)
    pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return pos, keys[pos] == wanted


def _last_per_holder(e: grant_repository.Entries, order: IntArray) -> grant_repository.Entries:
    """Of entries sorted by holder (``order``), the last of each holder."""
    h = e.holder_ids[order]
    return e.take(order[np.flatnonzero(np.r_[h[1:] != h[:-1], True])]) if len(h) else e


def _plan(
    holder_type: str,
    product: str,
    rows: grant_repository.Entries,
    granted: grant_repository.Entries,
    rolling: IntArray,
    target: _Target | None,
    now_us: int,
    slot_us: int,
) -> repo.RollingWrites:
    """The rows a refresh writes, computed over columns (no loop over holders).

    Each holder's *current* allowance is its latest row or grant starting by now (a row hides a grant
    of the same or an earlier start, as the ledger's MATERIALISE does); a *pending* one is a renewal
    row that starts later (at most one, untouched). Where the target differs from the current one:
    a pending row is set to it; else an untouched current row is set in place, and otherwise a
    renewal row is inserted where it may take over — the end of a running window, the start of an
    untouched grant (which the row then hides), now after an ended window, the slot start for a new
    holder. Where the target equals the current one, a pending row is dropped. Holders outside the
    population read (another governorate) are left alone; with no target (the rule ended) every
    holder whose current allowance is rolling gets nothing from its next window.
    """
    # a grant is superseded by any row of its holder starting at or after it
    order = np.lexsort((rows.start_us, rows.holder_ids))
    latest_row = _last_per_holder(rows, order)
    pos, found = _find(latest_row.holder_ids, granted.holder_ids)
    hidden = found & (latest_row.start_us[pos] >= granted.start_us) if found.any() else found
    keep = ~hidden & (granted.start_us <= now_us)
    if not keep.all():
        granted = granted.take(np.flatnonzero(keep))

    untouched = (rows.end_us == -1) & (rows.used_qty == 0) & (rows.held_qty == 0) & (rows.topup_qty == 0)
    untouched &= rows.carried_qty == 0
    later = rows.start_us > now_us
    pend = rows.take(np.flatnonzero(later & untouched & np.isin(rows.rule_version_ids, rolling)))
    pend = _last_per_holder(pend, np.lexsort((pend.start_us, pend.holder_ids)))

    both = granted
    if len(rows.ids):
        both = grant_repository.Entries.concat([rows.take(np.flatnonzero(~later)), granted])
    is_row = both.ids > 0
    cur = _last_per_holder(both, np.lexsort((is_row, both.start_us, both.holder_ids)))
    cur_rolling = np.isin(cur.rule_version_ids, rolling)

    parts = [cur.holder_ids[cur_rolling], pend.holder_ids]
    if target is not None:
        parts.append(target.ids[target.has])
    holders = np.sort(np.concatenate(parts))  # unique by hand: np.unique hashes, 20 × slower here
    holders = holders[np.r_[True, holders[1:] != holders[:-1]]] if len(holders) else holders
    if target is not None:
        holders = holders[np.isin(holders, target.ids) & ~np.isin(holders, target.elsewhere)]

    zero = np.zeros(len(holders), dtype=np.int64)
    t_has = np.zeros(len(holders), dtype=bool)
    t_v, t_b, t_g = zero, zero, zero
    if target is not None and len(target.ids):
        t_order = np.argsort(target.ids, kind="stable")
        t_pos, t_in = _find(target.ids[t_order], holders)
        t_at = t_order[t_pos]
        t_has = t_in & target.has[t_at]
        t_v = np.where(t_has, target.version[t_at], 0)
        t_b = np.where(t_has, target.base_qty[t_at], 0)
        t_g = np.where(t_has, target.granted_qty[t_at], 0)

    c_pos, c_in = _find(cur.holder_ids, holders)
    c = cur.take(c_pos) if len(cur.holder_ids) else None
    p_pos, p_in = _find(pend.holder_ids, holders)
    p = pend.take(p_pos) if len(pend.holder_ids) else None

    if c is not None:
        c_v, c_b = c.rule_version_ids, c.base_qty
        c_net = c.granted_qty - c.topup_qty - c.carried_qty  # what the rule gave, without one-offs
        c_zero = (c_b == 0) & (c_net == 0)
        c_roll = c_in & np.isin(c_v, rolling)
        same = np.where(t_has, c_in & (c_v == t_v) & (c_b == t_b) & (c_net == t_g), ~c_in | c_zero | ~c_roll)
        # a current row with no window open is changed in place; a top-up or carry it holds stays on it
        # (write_rolling adds them to the new grant): a renewal row would hide them
        c_row_untouched = c_in & (c.ids > 0) & (c.end_us == -1) & (c.used_qty == 0) & (c.held_qty == 0)
        start = np.select(
            [~c_in, (c.ids == 0) & (c.end_us == -1), c.end_us > now_us],
            [np.full(len(holders), slot_us), c.start_us, c.end_us],
            now_us,
        )
        version = np.where(t_has, t_v, c_v)  # a row that grants nothing keeps the version it ends
    else:
        same = ~t_has
        c_row_untouched = np.zeros(len(holders), dtype=bool)
        start = np.full(len(holders), slot_us, dtype=np.int64)
        version = t_v
    if p is not None:
        p_eq = np.where(
            t_has,
            (p.rule_version_ids == t_v) & (p.base_qty == t_b) & (p.granted_qty == t_g),
            (p.base_qty == 0) & (p.granted_qty == 0),
        )
        drop = p_in & same
        set_pending = p_in & ~same & ~p_eq
        p_ids = p.ids
    else:
        drop = set_pending = np.zeros(len(holders), dtype=bool)
        p_ids = zero
    need = ~same & ~p_in
    set_current = need & c_row_untouched
    insert = need & ~c_row_untouched
    c_ids = c.ids if c is not None else zero
    return repo.RollingWrites(
        holder_type,
        product,
        holders[insert],
        version[insert],
        start[insert],
        t_b[insert],
        t_g[insert],
        np.concatenate((p_ids[set_pending], c_ids[set_current])),
        np.concatenate((version[set_pending], version[set_current])),
        np.concatenate((t_b[set_pending], t_b[set_current])),
        np.concatenate((t_g[set_pending], t_g[set_current])),
        p_ids[drop],
    )


def prune_grants(session: Session, at: datetime, keep_days: int) -> grant_repository.Pruned:
    """Drop the stored grants of periods that ended more than ``keep_days`` ago and have been followed
    by the next opening (the worker, daily; ``cardctl period prune-grants``)."""
    if keep_days < 0:
        raise ValueError("keep_days must be zero or more")
    conn = session.connection()
    repo.lock_openings(conn)
    return grant_repository.prune(conn, at - timedelta(days=keep_days), at)


def _credit_points(
    conn: Connection, points: dict[tuple[str, str], _Points], at: datetime, tz: ZoneInfo
) -> int:
    """Points go to the holder's points allowance of the calendar month (summed over rules)."""
    month = window(PeriodSpec(kind="month"), at, tz)
    assert month is not None
    written = 0
    for (holder_type, product), acc in points.items():
        ids = np.concatenate(acc.ids)
        pts = np.concatenate(acc.points)
        uniq, inverse = np.unique(ids, return_inverse=True)
        total = np.zeros(len(uniq), dtype=np.int64)
        np.add.at(total, inverse, pts)
        keep = total > 0
        zero = np.zeros(int(keep.sum()), dtype=np.int64)
        repo.add_points(
            conn,
            repo.Rows(
                holder_type,
                product,
                acc.rule_version_id,
                month.start,
                month.end,
                uniq[keep],
                zero,
                total[keep],
                total[keep],
            ),
        )
        written += int(keep.sum())
    return written
