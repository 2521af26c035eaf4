"""The synthetic population: deterministic, consistent, and usable by the API afterwards."""

from __future__ import annotations

import shutil
from collections import Counter

from sqlalchemy import select, text

from card_backend import nationalid
from card_backend.auth.principal import Role
from card_backend.card.models import Card
from card_backend.config import Settings
from card_backend.db import make_engine
from card_backend.family.models import Exclusion, Family, Person
from card_backend.point.models import Point
from card_backend.seed import seed_population
from card_backend.vehicle.models import Vehicle
from tests.integration.test_family_api import make_family

SETTINGS = Settings(database_url="sqlite://", jwt_secret="x" * 48)


def test_seed_makes_a_consistent_population(engine):
    made = seed_population(engine, SETTINGS, families=600, seed=3)
    assert made["families"] == 600 and made["persons"] > 600 * 3
    with engine.connect() as conn:
        people = conn.execute(select(Person)).all()
        families = {f.id: f for f in conn.execute(select(Family)).all()}
        vehicles = conn.execute(select(Vehicle)).all()
        cards = conn.execute(select(Card)).all()
        points = conn.execute(select(Point)).all()
        excluded = conn.execute(select(Exclusion)).all()
    by_family: dict[int, list] = {}
    for p in people:
        assert nationalid.problem(p.national_id) is None
        by_family.setdefault(p.family_id, []).append(p)
    sizes = Counter(len(m) for m in by_family.values())
    assert set(sizes) <= set(range(1, 11)) and sizes.most_common(1)[0][0] in (4, 5)
    for fid, members in by_family.items():
        heads = [m for m in members if m.relation == "head"]
        assert len(heads) == 1 and families[fid].head_person_id == heads[0].id
        for m in members:
            if m.relation == "child":
                assert m.birth_date > heads[0].birth_date
            if m.relation == "parent":
                assert m.birth_date < heads[0].birth_date
            if not m.alive:
                assert m.died_on is not None and m.died_on > m.birth_date
    kinds = Counter(v.kind for v in vehicles)
    assert {"private", "taxi", "motorcycle", "government", "agricultural"} <= set(kinds)
    assert any(v.engine_cc >= 2000 for v in vehicles) and {v.fuel for v in vehicles} == {"gasoline", "diesel"}
    assert max(Counter(v.owner_person_id for v in vehicles).values()) == 2
    active = Counter((c.holder_type, c.holder_id) for c in cards if c.state == "active")
    assert set(active.values()) == {1}
    assert len([k for k in active if k[0] == "family"]) == 600 and len(
        [k for k in active if k[0] == "vehicle"]
    ) == len(vehicles)
    assert 0.04 <= len(excluded) / 600 <= 0.18 and all(e.reason for e in excluded)
    per_gov = Counter((p.governorate, p.kind) for p in points)
    assert len(per_gov) == len(SETTINGS.governorates) * 4
    assert all("bread" in p.products for p in points if p.kind == "bakery")
    assert all("gasoline" in p.products for p in points if p.kind == "fuel_station")


def test_same_seed_same_population(sqlite_template, tmp_path):
    dumps = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.sqlite3"
        shutil.copy(sqlite_template, path)
        eng = make_engine(f"sqlite:///{path}")
        seed_population(eng, SETTINGS, families=150, seed=11)
        with eng.connect() as conn:
            # the same rows, apart from when the database stamped them (issued_at: the clock's second)
            dumps.append(
                [
                    [
                        {k: v for k, v in row.items() if k not in ("issued_at", "created_at")}
                        for row in conn.execute(text(f"SELECT * FROM {t} ORDER BY id")).mappings()
                    ]
                    for t in (
                        "families",
                        "persons",
                        "vehicles",
                        "licences",
                        "licence_states",
                        "cards",
                        "exclusions",
                    )
                ]
            )
        eng.dispose()
    assert dumps[0] == dumps[1]
    other = tmp_path / "c.sqlite3"
    shutil.copy(sqlite_template, other)
    eng = make_engine(f"sqlite:///{other}")
    seed_population(eng, SETTINGS, families=150, seed=12)
    with eng.connect() as conn:
        assert conn.execute(text("SELECT * FROM persons ORDER BY id")).all() != dumps[0][1]
    eng.dispose()


def test_api_keeps_working_after_seed_and_seed_adds_to_existing_data(engine, client, auth):
    reg = auth(Role.REGISTRAR)
    before = make_family(client, reg)
    seed_population(engine, SETTINGS, families=50, seed=1)
    again = seed_population(engine, SETTINGS, families=50, seed=2)
    assert again["points"] == 0 and again["families"] == 50
    after = make_family(client, reg)
    assert after["id"] > before["id"] + 100
    r = client.post("/api/v1/cards", json={"holder_type": "family", "holder_id": after["id"]}, headers=reg)
    assert r.status_code == 201, r.text
