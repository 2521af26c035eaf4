"""Opening a period: every holder's allowance for every current rule, computed and bulk-loaded.

The population is read as columns, entitlement is computed with numpy, and the rows are loaded in
bulk (binary COPY on PostgreSQL). Each row keeps the ``rule_version_id`` it was opened with, so an
edit made afterwards (a new version) does not change an opened period.

Opening is safe to repeat: a period already opened for a product is only topped up with holders who
have no row yet (new families, a car bought mid-month), and a rolling allowance, which the ledger
moves along by itself, is never opened twice for a holder. Unused quantity of the previous period
is carried over or converted to points here, only for rows being created, so a repeat never
credits twice. Periods are opened by a daily job (bread is per day) or by an administrator.

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
from quota.domain.eligibility import HolderColumns, IntArray
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


@dataclass
class OpeningReport:
    at: datetime
    opened: list[OpenedRule] = field(default_factory=list)
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


def _carry(
    conn: Connection,
    res: entitlement.RuleResult,
    ids: IntArray,
    price_per_qty: int,
    tz: ZoneInfo,
    runs: grant_repository.RunCache,
) -> unused.Rollover | None:
    """Roll the previous period's unused first tier onto the holders being opened now."""
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
) -> OpeningReport:
    """Open, at ``at`` (or the start of ``period_key``), every current rule's period.

    ``rules`` are (rule_version_id, rule) pairs; by default the versions in force that day.
    ``populations`` may be passed by a caller that already holds them (the benchmark, a test).
    """
    started = time.perf_counter()
    when = at or (at_of(period_key, tz) if period_key else datetime.now(tz))
    day: date = when.astimezone(tz).date()
    conn = session.connection()
    repo.lock_openings(conn)  # two openers (a worker, an administrator) take turns: the second tops up
    chosen = list(rules) if rules is not None else rules_repository.current(session, day)
    version_of = {r.code: vid for vid, r in chosen}
    # Points go to the allowance of the points product's own rule when there is one (its terms then
    # govern spending); otherwise they carry the version of the rule that converted them.
    points_rule = {(r.holder_type, r.product): vid for vid, r in chosen}
    prices = {p.code: p.price_per_qty for p in session.scalars(select(Product))}
    if populations is None:
        govs = governorates or population.governorates_in(conn)
        plain = [r for _, r in chosen]
        types = {r.holder_type for r in plain}
        populations = population.load(conn, types, day, govs, ages=entitlement.needs_member_ages(plain))
    read_s = time.perf_counter() - started
    report = OpeningReport(at=when)
    fresh: list[repo.Rows] = []
    points: dict[tuple[str, str], _Points] = {}
    fresh_of: list[int | None] = []  # per opened rule, its index in ``fresh`` (None: topped up)
    runs: grant_repository.RunCache = {}  # grant runs read back once for all the rules
    for res in entitlement.compute([r for _, r in chosen], populations, when, tz):
        rule, mask = res.rule, res.allotted
        rolling = rule.period.kind == "rolling"
        ids = res.cols.ids
        # Whole-population arrays (0 where not allotted: base and granted are 0 where not eligible):
        # grants store them as they are; every other writer takes ``compact()`` rows.
        roll = _carry(conn, res, ids, prices.get(rule.product, 1), tz, runs)
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
        seen = repo.openings(conn, rule.holder_type, rule.product, None if rolling else res.window.start)
        if seen:
            rows = rows.compact()
            present = repo.existing_holders(conn, rows, any_period=rolling, cache=runs)
            keep = ~np.isin(rows.holder_ids, present)
            rows = rows.subset(keep)
            repo.insert_missing(conn, rows, any_period=rolling)
            pts = points_of[keep] if roll is not None else points_of
            fresh_of.append(None)
        else:
            fresh_of.append(len(fresh))
            fresh.append(rows)
            pts = points_of
        if pts.any():
            key = (rule.holder_type, rule.unused.points_product)
            acc = points.setdefault(key, _Points(points_rule.get(key, rows.rule_version_id)))
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


def due_rules(session: Session, at: datetime, tz: ZoneInfo = UTC) -> list[tuple[int, Rule]]:
    """Rules in force at ``at`` whose period serving ``at`` nobody has opened yet (a rolling rule:
    never opened; a seasonal rule between seasons is not due)."""
    conn = session.connection()
    due: list[tuple[int, Rule]] = []
    for vid, rule in rules_repository.current(session, at.astimezone(tz).date()):
        current = window(rule.period, at, tz)
        if current is None:
            continue
        start = None if rule.period.kind == "rolling" else current.start
        if not repo.openings(conn, rule.holder_type, rule.product, start):
            due.append((vid, rule))
    return due


def open_due(
    session: Session, at: datetime, governorates: tuple[str, ...] = (), tz: ZoneInfo = UTC
) -> OpeningReport | None:
    """Open the periods that have begun since the last opening (the worker's daily bread, a new week
    or month); None when every current period is already open. Safe beside another opener."""
    repo.lock_openings(session.connection())
    due = due_rules(session, at, tz)
    if not due:
        return None
    return open_period(session, at=at, rules=due, governorates=governorates, tz=tz, opened_by="worker")


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
