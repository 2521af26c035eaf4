"""Prepare a database for the locust scenarios: population, demo rules, the current period, an admin,
and a device at each of N points. Writes ``devices.txt`` and ``cards.txt`` into the load folder.

Run: ``python -m loadtests.load_setup URL --families 20000 --out var/load`` (prints the admin password).
"""

from __future__ import annotations

import argparse
import secrets
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from card_backend.auth.principal import Role
from card_backend.auth.security import new_device_token, token_sha256
from card_backend.auth.service import create_user
from card_backend.config import Settings
from card_backend.db import make_engine
from card_backend.migrate import upgrade
from card_backend.seed import seed_population
from quota import rules_repository
from quota.opening import open_period


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--families", type=int, default=20_000)
    ap.add_argument("--points", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path("var/load"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = Settings(database_url=args.url)
    upgrade(args.url)
    engine = make_engine(args.url)
    seed_population(engine, settings, families=args.families, seed=11)
    password = secrets.token_urlsafe(12)
    with Session(engine) as s, s.begin():
        rules_repository.install_demo(s, actor="load")
        open_period(s, at=datetime.now(UTC), governorates=settings.governorates, opened_by="load")
        create_user(s, username="admin", password=password, role=Role.ADMIN, point_id=None)
    lines = []
    with engine.begin() as conn:
        points = conn.execute(
            text("SELECT id, code FROM points WHERE kind IN ('state_outlet', 'bakery') ORDER BY id LIMIT :n"),
            {"n": args.points},
        ).all()
        for point_id, code in points:
            token = new_device_token()
            conn.execute(text("INSERT INTO devices (point_id, name, token_sha256) VALUES (:p, 'load', :h)"),
                         {"p": point_id, "h": token_sha256(token)})
            lines.append(f"{code} {token}")
        cards = conn.scalars(
            text("SELECT serial FROM cards WHERE holder_type = 'family' AND state = 'active'")
        )
        (args.out / "cards.txt").write_text("\n".join(cards) + "\n")
    (args.out / "devices.txt").write_text("\n".join(lines) + "\n")
    (args.out / "admin.txt").write_text(password + "\n")
    print(f"# {args.families} families, {len(lines)} devices; admin password in {args.out / 'admin.txt'}")


if __name__ == "__main__":
    main()
