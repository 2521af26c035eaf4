"""A deterministic, realistic synthetic population (``cardctl seed --families N --seed S``).

Same seed on the same (empty) database → the same rows, ids included: randomness comes only from
``random.Random(seed)`` and dates from a fixed reference day, never from the clock. Shapes follow RULES.md
and public figures: family sizes 1–10 with the mode at 4–5, governorates weighted by population, birth
dates consistent with relations, vehicles of every kind for about 40 % of families (some with two, some
≥ 2000 cc), licences for a share of adults (some suspended, revoked or expired), an active card per family
and per vehicle, points of each kind in every governorate, and about 10 % of families on the exclusion list
with a RULES.md 2022 reason. Rows go in by bulk ``executemany`` in chunks, never ORM objects one by one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Engine, func, insert, select, text

from card_backend import governorates as govs
from card_backend import nationalid
from card_backend.card.models import Card
from card_backend.config import Settings
from card_backend.family.models import Exclusion, Family, FamilyEvent, Person
from card_backend.licence.models import Licence, LicenceState
from card_backend.point.models import Point
from card_backend.seed_names import DISTRICTS, FAMILY, FEMALE, MALE
from card_backend.seed_points import point_rows
from card_backend.vehicle.models import Vehicle

REFERENCE_DAY = date(2025, 1, 1)
CHUNK = 2000
SIZES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
SIZE_WEIGHTS = (6, 11, 15, 20, 19, 13, 8, 4, 2, 2)
# kind: (share %, fuel choices, engine cc range)
VEHICLE_KINDS: dict[str, tuple[int, tuple[str, ...], tuple[int, int]]] = {
    "private": (58, ("gasoline",) * 19 + ("diesel",), (1000, 3200)),
    "taxi": (10, ("gasoline",), (1200, 1800)),
    "motorcycle": (14, ("gasoline",), (100, 250)),
    "truck": (5, ("diesel",), (4000, 12000)),
    "bus": (3, ("diesel",), (3000, 8000)),
    "agricultural": (6, ("diesel",), (2000, 5000)),
    "government": (4, ("gasoline", "gasoline", "diesel"), (1600, 3000)),
}
OTHER_EXCLUSIONS = (
    "commercial_register",
    "head_abroad_over_1_year",
    "large_taxpayer",
    "fuel_station_licence",
)


@dataclass
class _Ids:
    """Next id of each table, read once: rows carry explicit ids so relations need no round trip."""

    next: dict[str, int]

    def take(self, table: str) -> int:
        value = self.next[table]
        self.next[table] = value + 1
        return value


@dataclass
class _Batch:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, table: str, **row: Any) -> None:
        self.rows.setdefault(table, []).append(row)


TABLES: dict[str, Any] = {
    "families": Family,
    "persons": Person,
    "family_events": FamilyEvent,
    "vehicles": Vehicle,
    "licences": Licence,
    "licence_states": LicenceState,
    "cards": Card,
    "exclusions": Exclusion,
    "points": Point,
}
ORDER = (
    "families",
    "persons",
    "family_events",
    "vehicles",
    "licences",
    "licence_states",
    "cards",
    "exclusions",
)


def _day(rng: random.Random, start: date, end: date) -> date:
    return start + timedelta(days=rng.randint(0, max(0, (end - start).days)))


def _birth(rng: random.Random, age: int) -> date:
    return _day(rng, date(REFERENCE_DAY.year - age - 1, 1, 2), date(REFERENCE_DAY.year - age, 1, 1))


class _Maker:
    def __init__(self, settings: Settings, seed: int, ids: _Ids) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.ids = ids
        self.govs = list(settings.governorates)
        self.gov_weights = [govs.weight(g) for g in self.govs]
        self.kinds = list(VEHICLE_KINDS)
        self.kind_weights = [VEHICLE_KINDS[k][0] for k in self.kinds]

    def family(self, b: _Batch) -> None:
        rng = self.rng
        gov = rng.choices(self.govs, self.gov_weights)[0]
        gov_no = self.govs.index(gov) + 1
        fid = self.ids.take("families")
        size = rng.choices(SIZES, SIZE_WEIGHTS)[0]
        last_ar, last_en = rng.choice(FAMILY)
        head_age = rng.randint(22, 78) if size > 1 else rng.randint(19, 90)
        head_female = rng.random() < 0.12
        members: list[dict[str, Any]] = []

        def person(
            relation: str, sex: str, age: int, last: tuple[str, str] = (last_ar, last_en)
        ) -> dict[str, Any]:
            pid = self.ids.take("persons")
            first_ar, first_en = rng.choice(MALE if sex == "M" else FEMALE)
            row = {
                "id": pid,
                "national_id": nationalid.make(gov_no, pid % 10**8),
                "family_id": fid,
                "first_name_ar": first_ar,
                "last_name_ar": last[0],
                "first_name_en": first_en,
                "last_name_en": last[1],
                "birth_date": _birth(rng, age),
                "sex": sex,
                "relation": relation,
                "alive": True,
                "died_on": None,
            }
            members.append(row)
            return row

        head = person("head", "F" if head_female else "M", head_age)
        slots = size - 1
        if slots and not (head_female and rng.random() < 0.7):
            spouse_age = max(18, head_age + (rng.randint(-12, 0) if not head_female else rng.randint(0, 8)))
            person("spouse", "M" if head_female else "F", spouse_age, rng.choice(FAMILY))
            slots -= 1
        if slots >= 3 and head_age < 55 and rng.random() < 0.25:
            parent = person("parent", rng.choice("MF"), min(95, head_age + rng.randint(22, 35)))
            slots -= 1
            if rng.random() < 0.1:  # a death recorded in the family book
                parent["alive"], parent["died_on"] = False, _day(rng, date(2020, 1, 1), REFERENCE_DAY)
        for _ in range(slots):
            person(
                "child", rng.choice("MF"), max(0, head_age - rng.randint(18, min(45, max(18, head_age - 1))))
            )
        b.add(
            "families",
            id=fid,
            book_number=f"{gov_no:02d}-{fid:08d}",
            governorate=gov,
            address=f"{rng.choice(DISTRICTS)}، {govs.arabic_name(gov)}",
            head_person_id=head["id"],
            status="active",
            phone=f"09{rng.randint(30_000_000, 99_999_999)}",
            email=None,
        )
        for row in members:
            b.add("persons", **row)
        b.add(
            "family_events",
            family_id=fid,
            kind="create",
            actor=f"seed:{self.seed}",
            at=REFERENCE_DAY,
            old=None,
            new={"source": "seed", "seed": self.seed, "members": len(members)},
        )
        b.add(
            "cards",
            id=self.ids.take("cards"),
            serial=f"SD{self.seed % 100:02d}{fid:010d}",
            holder_type="family",
            holder_id=fid,
            state="active",
            state_reason="",
            replaces_id=None,
            last_counter=0,
        )
        adults = [m for m in members if m["alive"] and (REFERENCE_DAY - m["birth_date"]).days >= 18 * 366]
        vehicles = self._vehicles(b, gov, gov_no, head)
        licensed = {v["owner_person_id"] for v in vehicles}
        licensed |= {m["id"] for m in adults if rng.random() < 0.3}
        for m in adults:
            if m["id"] in licensed:
                self._licence(b, m, [v["kind"] for v in vehicles if v["owner_person_id"] == m["id"]])
        reason = self._exclusion_reason(vehicles)
        if reason is not None:
            b.add(
                "exclusions",
                id=self.ids.take("exclusions"),
                holder_type="family",
                holder_id=fid,
                reason=reason,
                since=date(2022, 2, 1),
                until=None,
            )

    def _vehicles(self, b: _Batch, gov: str, gov_no: int, head: dict[str, Any]) -> list[dict[str, Any]]:
        rng = self.rng
        roll = rng.random()
        count = 2 if roll < 0.04 else 1 if roll < 0.40 else 0
        made = []
        for _ in range(count):
            kind = rng.choices(self.kinds, self.kind_weights)[0]
            _share, fuels, (low, high) = VEHICLE_KINDS[kind]
            cc = rng.randint(low, high) // 50 * 50
            if kind == "private" and rng.random() < 0.6:
                cc = min(cc, 1950)  # most private cars are small; the rest reach 3200 cc
            vid = self.ids.take("vehicles")
            row = {
                "id": vid,
                "plate": f"{100000 + vid}",
                "governorate": gov,
                "kind": kind,
                "fuel": rng.choice(fuels),
                "engine_cc": max(cc, 50),
                "model_year": rng.randint(1985, 2007) if rng.random() < 0.7 else rng.randint(2008, 2024),
                "owner_person_id": head["id"],
            }
            b.add("vehicles", **row)
            b.add(
                "cards",
                id=self.ids.take("cards"),
                serial=f"SV{self.seed % 100:02d}{vid:010d}",
                holder_type="vehicle",
                holder_id=vid,
                state="active",
                state_reason="",
                replaces_id=None,
                last_counter=0,
            )
            made.append(row)
        return made

    def _licence(self, b: _Batch, person: dict[str, Any], kinds: list[str]) -> None:
        rng = self.rng
        lid = self.ids.take("licences")
        cats = (
            {"B"}
            | {"A" for k in kinds if k == "motorcycle"}
            | {"C" for k in kinds if k in ("truck", "agricultural")}
        )
        cats |= {"D" for k in kinds if k == "bus"}
        adult_on = person["birth_date"] + timedelta(days=18 * 366)
        if rng.random() < 0.1:  # not renewed: expired by the reference day
            issued = _day(rng, max(adult_on, date(2000, 1, 1)), REFERENCE_DAY - timedelta(days=10 * 365 + 1))
        else:
            issued = _day(rng, max(adult_on, REFERENCE_DAY - timedelta(days=10 * 365)), REFERENCE_DAY)
        expires = issued + timedelta(days=10 * 365)
        b.add(
            "licences",
            id=lid,
            person_id=person["id"],
            number=f"DL{lid:09d}",
            categories=",".join(sorted(cats)),
            issued_on=issued,
            expires_on=expires,
        )
        b.add("licence_states", licence_id=lid, state="valid", reason="issued", effective_on=issued)
        roll = rng.random()
        if roll < 0.06:
            on = _day(rng, issued, REFERENCE_DAY)
            b.add(
                "licence_states",
                licence_id=lid,
                state="suspended",
                reason="traffic violations",
                effective_on=on,
            )
            if rng.random() < 0.5:
                b.add(
                    "licence_states",
                    licence_id=lid,
                    state="valid",
                    reason="suspension served",
                    effective_on=on + timedelta(days=90),
                )
        elif roll < 0.08:
            b.add(
                "licence_states",
                licence_id=lid,
                state="revoked",
                reason="court order",
                effective_on=_day(rng, issued, REFERENCE_DAY),
            )

    def _exclusion_reason(self, vehicles: list[dict[str, Any]]) -> str | None:
        """RULES.md 2022 criteria from the family's own data first, then the ones the registry cannot see."""
        cars = [v for v in vehicles if v["kind"] == "private"]
        if len(vehicles) >= 2:
            return "more_than_one_car"
        if any(v["engine_cc"] > 3000 and v["model_year"] >= 2001 for v in cars):
            return "car_over_3000cc_from_2001"
        if any(v["engine_cc"] >= 1500 and v["model_year"] >= 2008 for v in cars):
            return "car_1500cc_from_2008"
        if self.rng.random() < 0.025:
            return self.rng.choice(OTHER_EXCLUSIONS)
        return None


def seed_population(
    engine: Engine,
    settings: Settings,
    *,
    families: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Insert the population in one transaction; returns how many rows of each kind were made."""
    made = dict.fromkeys(["points", *ORDER], 0)
    with engine.begin() as conn:
        pg = conn.dialect.name == "postgresql"
        if pg:
            conn.execute(
                text(
                    "LOCK TABLE families, persons, vehicles, licences, cards, points "
                    "IN SHARE ROW EXCLUSIVE MODE"
                )
            )
        ids = _Ids(
            {
                name: int(conn.scalar(select(func.coalesce(func.max(TABLES[name].id), 0))) or 0) + 1
                for name in ("families", "persons", "vehicles", "licences", "cards", "points", "exclusions")
            }
        )
        points = point_rows(settings, set(conn.scalars(select(Point.code))), lambda: ids.take("points"))
        if points:
            conn.execute(insert(Point), points)
        made["points"] = len(points)
        maker = _Maker(settings, seed, ids)
        done = 0
        while done < families:
            batch = _Batch()
            for _ in range(min(CHUNK, families - done)):
                maker.family(batch)
            for name in ORDER:
                rows = batch.rows.get(name, [])
                if rows:
                    conn.execute(insert(TABLES[name]), rows)
                    made[name] += len(rows)
            done += min(CHUNK, families - done)
            if progress is not None:
                progress(done)
        if pg:
            for name in ("families", "persons", "vehicles", "licences", "cards", "points", "exclusions"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                        f"GREATEST((SELECT COALESCE(MAX(id), 0) FROM {name}), 1))"
                    )
                )
    return made
