"""Opening a period on SQLite and PostgreSQL: rows, frozen rule versions, repeats, carry-over, points."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from quota import rules_repository
from quota.domain.rules import Rule
from quota.opening import at_of, open_due, open_period
from quota.redemption import Redemption
from tests.integration.rules_seed import (
    EXCLUDED_FAMILY,
    allowance_rows,
    running_ledger,
    seed_registry,
    seed_rules,
    seed_world,
    touch,
)

NOV = datetime(2026, 11, 18, 12, tzinfo=UTC)
DEC = datetime(2026, 12, 2, 12, tzinfo=UTC)


def rows(session: Session, product: str) -> dict[int, dict[str, Any]]:
    """The product's allowance per holder (the latest period wins), as the ledger reads them."""
    return {r["holder_id"]: r for r in every_row(session, product)}


def every_row(session: Session, product: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for holder_type, table in (("family", "families"), ("person", "persons"), ("vehicle", "vehicles")):
        ids = [int(i) for (i,) in session.execute(text(f"SELECT id FROM {table} ORDER BY id"))]
        found += allowance_rows(session, holder_type, ids, product)
    return found


def setup(factory: sessionmaker[Session]) -> None:
    with factory.begin() as s:
        seed_registry(s)
        seed_rules(s)


def test_opening_writes_each_eligible_holders_allowance(session_factory: sessionmaker[Session]) -> None:
    setup(session_factory)
    with session_factory.begin() as s:
        report = open_period(s, at=NOV, governorates=("damascus", "homs", "aleppo"))
    assert report.rows > 0
    with session_factory() as s:
        sugar = rows(s, "sugar")
        # sizes 2, 5, 3, 8 → 2 kg, 4 kg (cap), 3 kg, 4 kg; the excluded family gets nothing
        assert {h: r["granted_qty"] for h, r in sugar.items()} == {1: 2000, 2: 4000, 3: 3000, 4: 4000}
        assert EXCLUDED_FAMILY not in rows(s, "bread")
        assert {h: r["base_qty"] for h, r in rows(s, "bread").items()} == {1: 1, 2: 3, 3: 2, 4: 4}
        heating = rows(s, "heating_diesel")[2]
        assert (heating["base_qty"], heating["granted_qty"]) == (200_000, 250_000)  # + free tier of 50 L
        gas = rows(s, "gasoline")
        # car 1 subsidised (+ free tier), car 2 second car free only, car 3 licence suspended,
        # car 4 government monthly, car 5 diesel
        assert {h: (r["base_qty"], r["granted_qty"]) for h, r in gas.items()} == {
            1: (20_000, 40_000),
            2: (20_000, 20_000),
            4: (800_000, 800_000),
        }
        assert gas[1]["period_end"] is None  # rolling: not started until the first fill
        versions = {v.code: v.id for v in rules_repository.versions(s)}
        assert gas[2]["rule_version_id"] == versions["gasoline_second_car"]


def test_reopening_is_idempotent_and_adds_only_new_holders(session_factory: sessionmaker[Session]) -> None:
    setup(session_factory)
    with session_factory.begin() as s:
        first = open_period(s, at=NOV)
    with session_factory.begin() as s:
        again = open_period(s, at=NOV)
    assert first.rows > 0 and again.rows == 0
    with session_factory.begin() as s:
        s.execute(
            text(
                "INSERT INTO families (id, book_number, governorate, address, status) "
                "VALUES (6, 'B6', 'homs', '', 'active')"
            )
        )
        s.execute(
            text(
                "INSERT INTO persons (id, national_id, family_id, first_name_ar, last_name_ar, "
                "first_name_en, last_name_en, birth_date, sex, relation, alive) VALUES "
                "(50, '00000000050', 6, 'أ', 'ب', '', '', '1990-01-01', 'F', 'head', true)"
            )
        )
    with session_factory.begin() as s:
        topped = open_period(s, at=NOV)
    by_rule = {o.rule_code: o.rows for o in topped.opened}
    assert by_rule["sugar_family"] == 1 and by_rule["gas_cylinder_family"] == 1
    assert by_rule["gasoline_private"] == 0
    with session_factory() as s:
        assert rows(s, "sugar")[6]["granted_qty"] == 1000
        assert len(every_row(s, "gas_cylinder")) == 5


def test_a_rule_edited_after_opening_does_not_change_the_opened_period(
    session_factory: sessionmaker[Session],
) -> None:
    setup(session_factory)
    with session_factory.begin() as s:
        open_period(s, at=NOV)
    with session_factory.begin() as s:
        (old_id, old), *_ = [
            (vid, r) for vid, r in rules_repository.current(s, NOV.date()) if r.code == "sugar_family"
        ]
        body = old.model_dump(mode="json")
        body["amount"] = {"per_member_qty": 500, "cap_qty": 2000}
        new = rules_repository.add_version(s, Rule.model_validate(body), "admin")
        assert new.version == 2 and new.id != old_id
    with session_factory.begin() as s:
        open_period(s, at=NOV)  # a repeat in November keeps November as opened
        open_period(s, at=DEC)
    with session_factory() as s:
        nov = [(r["granted_qty"], r["rule_version_id"]) for r in allowance_rows(s, "family", [2], "sugar")]
        # December under version 2: 2 kg, plus 1 kg carried (the cap) of November's unused 4 kg
        assert nov == [(4000, old_id), (3000, new.id)]


def test_a_price_edited_after_opening_does_not_change_what_the_opened_period_costs(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    """The ledger prices a row by the rule version it was opened under, not the rule's newest version:
    sugar opened in November at 350 a kg still costs 350 a kg after a version at 999 from the 18th."""
    with session_factory.begin() as s:
        seed_world(s, [("OUTLET", "state_outlet", ["sugar"])], [("family", 1)])
    with session_factory.begin() as s:
        open_period(s, at=NOV)
    with session_factory.begin() as s:
        (old_id, old), *_ = [
            (vid, r) for vid, r in rules_repository.current(s, NOV.date()) if r.code == "sugar_family"
        ]
        body = old.model_dump(mode="json")
        body["tiers"] = [{"name": "subsidised", "price_minor": 999}]
        body["effective_from"] = NOV.date().isoformat()
        assert rules_repository.add_version(s, Rule.model_validate(body), "admin").id != old_id
    with running_ledger(engine, NOV) as ledger:
        out = ledger.redeem(Redemption(str(uuid.uuid4()), "F000001", "sugar", 1000, "OUTLET", NOV))
    # family 1 (two members) was granted 2 kg in November under version 1
    assert (out.result, out.price_minor, out.remaining_qty) == ("ok", 350, 1000)
    with session_factory() as s:
        assert [r["rule_version_id"] for r in allowance_rows(s, "family", [1], "sugar")] == [old_id]


def test_carry_over_up_to_the_cap_and_points_at_the_next_period(
    session_factory: sessionmaker[Session],
) -> None:
    setup(session_factory)
    with session_factory.begin() as s:
        open_period(s, at=NOV)
    with session_factory.begin() as s:
        # family 1 used 500 g of 2 kg sugar (1.5 kg unused, cap 1 kg); family 2 used all 4 kg;
        # family 3 drew one of its two bread bundles on 18 Nov (1 unused → 10 points).
        touch(s, "family", [1, 2, 3, 4, 5, 6], "sugar", NOV)
        touch(s, "family", [1, 2, 3, 4, 5, 6], "bread", NOV)
        s.execute(text("UPDATE allowances SET used_qty = 500 WHERE product_code = 'sugar' AND holder_id = 1"))
        s.execute(
            text("UPDATE allowances SET used_qty = 4000 WHERE product_code = 'sugar' AND holder_id = 2")
        )
        s.execute(text("UPDATE allowances SET used_qty = granted_qty WHERE product_code = 'bread'"))
        s.execute(text("UPDATE allowances SET used_qty = 1 WHERE product_code = 'bread' AND holder_id = 3"))
    with session_factory.begin() as s:
        open_period(s, at=datetime(2026, 11, 19, 8, tzinfo=UTC))  # next day: bread rolls over
        open_period(s, at=DEC)
    with session_factory() as s:
        sugar = rows(s, "sugar")
        assert (sugar[1]["carried_qty"], sugar[1]["granted_qty"]) == (1000, 3000)
        assert (sugar[2]["carried_qty"], sugar[2]["granted_qty"]) == (0, 4000)
        points = rows(s, "points")
        assert {h: r["granted_qty"] for h, r in points.items()} == {3: 10}
    with session_factory.begin() as s:
        again = open_period(s, at=DEC)  # a repeat credits nothing twice
    assert again.rows == 0
    with session_factory() as s:
        assert rows(s, "sugar")[1]["granted_qty"] == 3000


def test_period_key_names_the_first_day() -> None:
    assert at_of("2026-11") == datetime(2026, 11, 1, tzinfo=at_of("2026-11").tzinfo)
    assert at_of("2026-11-18").day == 18


def test_age_predicates_and_person_holders_read_members_ages(session_factory: sessionmaker[Session]) -> None:
    """Rules that look at ages make opening read birth dates: persons and counted members."""
    setup(session_factory)
    milk = Rule.model_validate(
        {
            "code": "milk_infant",
            "product": "sugar",
            "holder_type": "person",
            "eligibility": {"members_aged": {"min_age": 0, "max_age": 10}},
            "amount": {"base_qty": 500},
            "period": {"kind": "month"},
            "tiers": [{"name": "subsidised", "price_minor": 100}],
            "effective_from": "2026-01-01",
        }
    )
    school = Rule.model_validate(
        {
            "code": "rice_children",
            "product": "rice",
            "holder_type": "family",
            "eligibility": {"members_aged": {"min_age": 0, "max_age": 17}},
            "amount": {"per_member_qty": 250, "member_ages": {"min_age": 0, "max_age": 17}},
            "period": {"kind": "month"},
            "tiers": [{"name": "subsidised", "price_minor": 400}],
            "effective_from": "2026-01-01",
        }
    )
    with session_factory.begin() as s:
        open_period(s, at=NOV, rules=[(901, milk), (902, school)])
    with session_factory() as s:
        # born 2020 (family 3, person 10) is 6 in November 2026; born 2015 (family 2, person 7) is 11
        assert set(rows(s, "sugar")) == {10}
        # family 2: members born 2010 and 2015 are under 18; family 3: 2020; family 4: 2010
        assert {h: r["base_qty"] for h, r in rows(s, "rice").items()} == {2: 500, 3: 250, 4: 250}


def test_installing_the_demo_rule_set_twice_adds_nothing_the_second_time(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as s:
        products, versions = rules_repository.install_demo(s)
    assert products == 8 and versions == 13
    with session_factory.begin() as s:
        assert rules_repository.install_demo(s) == (0, 0)


def test_due_periods_open_once_and_a_new_day_opens_only_the_days_bread(
    session_factory: sessionmaker[Session],
) -> None:
    setup(session_factory)
    with session_factory.begin() as s:
        first = open_due(s, NOV)
    assert first is not None and first.rows > 0
    assert {o.product for o in first.opened} >= {"sugar", "bread", "gas_cylinder"}
    with session_factory.begin() as s:
        assert open_due(s, NOV + timedelta(hours=3)) is None  # same day: nothing has begun
    with session_factory.begin() as s:
        nxt = open_due(s, NOV + timedelta(days=1))
    assert nxt is not None and {o.product for o in nxt.opened if not o.topped_up} == {"bread"}
    # and the rolling allowances are refreshed once a day: nothing changed, nothing written
    assert {(o.product, o.rows) for o in nxt.opened if o.topped_up} == {("gas_cylinder", 0), ("gasoline", 0)}
    with session_factory.begin() as s:
        assert open_due(s, NOV + timedelta(days=1, hours=3)) is None
    with session_factory() as s:
        bread = [r for r in every_row(s, "bread") if r["holder_id"] == 1]
        assert [r["period_start"].day for r in bread] == [18, 19]
