"""The registry read as columns: the parallel PostgreSQL read (extra connections on the caller's
snapshot, tables split into page ranges) returns what one connection reads, and a transaction that
has written to the registry reads on its own connection, so it sees its uncommitted rows."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest
from sqlalchemy import Connection, Engine, insert, text
from sqlalchemy.orm import Session

from card_backend.db import make_session_factory
from card_backend.family.models import Exclusion, Family, Person
from quota import population
from quota.domain.eligibility import HolderColumns, ages_at
from quota.opening import open_period
from tests.integration.rules_seed import seed_registry, seed_rules

ON = date(2026, 11, 1)
BORN_FROM = date(1940, 1, 1).toordinal()
NOV = datetime(2026, 11, 18, 12, tzinfo=UTC)
GOVS = ("damascus", "homs", "aleppo")
TYPES = ("family", "person", "vehicle")
FIELDS = (
    "ids", "governorate", "family_size", "excluded", "member_holder", "member_age", "vehicle_kind",
    "fuel", "engine_cc", "model_year", "licence_valid", "nth_vehicle",
)  # fmt: skip


@pytest.fixture
def pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Split tables into one-page slices, so a test-sized registry takes the parallel path."""
    monkeypatch.setattr(population, "CHUNK_BLOCKS", 1)


def seed(engine: Engine) -> None:
    """The rules seed's registry plus 400 families over some 50 pages of persons: inactive families,
    dead members, exclusions, and updated rows (new row versions at the end of the table)."""
    with make_session_factory(engine).begin() as s:
        seed_registry(s)
        fams = range(101, 501)
        s.execute(
            insert(Family),
            [
                {
                    "id": f,
                    "book_number": f"B{f}",
                    "governorate": GOVS[f % 3] if f % 11 else "raqqa",
                    "status": "active" if f % 13 else "suspended",
                }
                for f in fams
            ],
        )
        s.execute(
            insert(Person),
            [
                {
                    "id": 1000 + f * 10 + k,
                    "national_id": f"{1000 + f * 10 + k:011d}",
                    "family_id": f,
                    "first_name_ar": "أ" * 20,
                    "last_name_ar": "ب" * 20,
                    "birth_date": date.fromordinal(BORN_FROM + (f * 31 + k * 977) % 30000),
                    "sex": "F" if k % 2 else "M",
                    "relation": "other",
                    "alive": (f + k) % 17 != 0,
                }
                for f in fams
                for k in range(1 + f % 8)
            ],
        )
        excluded = [("family", f) for f in fams if f % 7 == 0] + [("person", 2050)]
        s.execute(
            insert(Exclusion),
            [
                {"holder_type": t, "holder_id": h, "reason": "x", "since": date(2022, 1, 1)}
                for t, h in excluded
            ],
        )
        s.execute(text("UPDATE persons SET birth_date = birth_date + 1 WHERE family_id % 5 = 0"))


def columns(conn: Connection, workers: int) -> dict[str, HolderColumns]:
    return population.load(conn, TYPES, ON, GOVS, workers=workers)


def assert_same(a: dict[str, HolderColumns], b: dict[str, HolderColumns]) -> None:
    assert a.keys() == b.keys()
    for t in a:
        for f in FIELDS:
            x, y = getattr(a[t], f), getattr(b[t], f)
            assert x.dtype == y.dtype and np.array_equal(x, y), (t, f)
        assert a[t].governorates == b[t].governorates


def test_every_read_returns_the_columns_of_a_read_on_one_connection(engine: Engine, pages: None) -> None:
    seed(engine)
    with engine.connect() as conn:
        one = columns(conn, 1)
    with engine.connect() as conn:
        spread = columns(conn, 2)
    assert_same(one, spread)
    fam = one["family"]
    assert len(fam.ids) == 5 + sum(1 for f in range(101, 501) if f % 13)  # not suspended families
    assert fam.family_size[population.positions(fam.ids, np.array([1, 106]))].tolist() == [2, 3]


@pytest.mark.postgres
def test_postgresql_reads_in_parallel_on_the_callers_snapshot(pg_engine: Engine, pages: None) -> None:
    seed(pg_engine)
    with pg_engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        before = columns(conn, 1)  # fixes the caller's snapshot
        with pg_engine.begin() as other:  # commits the caller must not see: moves, deletes, inserts
            other.execute(
                text("UPDATE persons SET birth_date = '2000-01-01', family_id = 1 WHERE id % 3 = 0")
            )
            other.execute(text("DELETE FROM persons WHERE id % 3 = 1 AND id > 1000"))
            other.execute(insert(Family), [{"id": 900, "book_number": "B900", "governorate": "homs"}])
        with population.reader(conn) as rd:
            assert rd.parallel
            spread = {t: population.LOADERS[t](conn, ON, GOVS, rd=rd) for t in TYPES}
        assert_same(before, spread)
    with pg_engine.connect() as conn:
        assert 900 in columns(conn, 2)["family"].ids  # a new transaction sees the commits


@pytest.mark.postgres
def test_a_transaction_that_wrote_to_the_registry_reads_its_own_rows(pg_engine: Engine, pages: None) -> None:
    seed(pg_engine)
    with Session(pg_engine) as s:
        conn = s.connection()
        with population.reader(conn) as rd:
            assert rd.parallel  # nothing written yet
        s.execute(insert(Family), [{"id": 900, "book_number": "B900", "governorate": "homs"}])
        s.execute(
            insert(Person),
            [
                {"id": 9000 + k, "national_id": f"9{k:010d}", "family_id": 900, "first_name_ar": "أ",
                 "last_name_ar": "ب", "birth_date": date(2000, 1, 1), "sex": "M", "relation": "other"}
                for k in range(3)
            ],
        )  # fmt: skip
        with population.reader(conn) as rd:
            assert not rd.parallel  # the other connections could not see these rows
        fam = population.load(conn, {"family"}, ON, GOVS)["family"]
        assert fam.family_size[population.positions(fam.ids, np.array([900]))].tolist() == [3]
        s.rollback()


@pytest.mark.postgres
def test_an_opening_after_uncommitted_registry_writes_opens_their_allowances(
    pg_engine: Engine, pages: None
) -> None:
    seed(pg_engine)
    factory = make_session_factory(pg_engine)
    with factory.begin() as s:
        seed_rules(s)

    def sugar_rows(new_family: bool) -> int:
        with factory() as s:
            if new_family:
                s.execute(insert(Family), [{"id": 900, "book_number": "B900", "governorate": "homs"}])
                s.execute(
                    insert(Person),
                    [{"id": 9000, "national_id": "90000000000", "family_id": 900, "first_name_ar": "أ",
                      "last_name_ar": "ب", "birth_date": date(1990, 1, 1), "sex": "M", "relation": "head"}],
                )  # fmt: skip
            report = open_period(s, at=NOV, governorates=GOVS)
            s.rollback()
        (sugar,) = [o for o in report.opened if o.product == "sugar" and o.holder_type == "family"]
        return sugar.rows

    assert sugar_rows(new_family=True) == sugar_rows(new_family=False) + 1


def test_positions_and_ages_match_a_binary_search_and_the_calendar() -> None:
    rng = np.random.default_rng(7)
    dense = np.unique(rng.integers(1, 50_000, 30_000))  # registry-like ids: the lookup-table path
    sparse = np.unique(rng.integers(-(10**12), 10**12, 1_000))  # the binary-search path
    for ids in (dense, sparse, dense[:1], np.zeros(0, np.int64)):
        keys = np.concatenate([ids, rng.integers(-100, 60_000, 5_000), rng.choice(sparse, 50), [-(2**40)]])
        pos = np.searchsorted(ids, keys)
        found = (
            (ids[np.minimum(pos, max(len(ids) - 1, 0))] == keys) if len(ids) else np.zeros(len(keys), bool)
        )
        expected = np.where(found, pos, -1)
        assert np.array_equal(population.positions(ids, keys), expected)
    born = np.array(
        [date(2000, 2, 29), date(2008, 11, 1), date(2008, 11, 2), date(1950, 1, 1)], "datetime64[D]"
    )
    days = born.astype(np.int64)
    assert population._ages(days, ON).tolist() == [26, 18, 17, 76]
    many = rng.integers(-25_000, 20_000, 100_000)
    assert np.array_equal(population._ages(many, ON), ages_at(many.astype("datetime64[D]"), ON))
