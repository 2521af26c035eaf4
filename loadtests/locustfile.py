"""Locust scenarios in realistic proportions: clerks tapping cards at many points, citizens checking
their quota, administrators simulating a rule change.

Inputs (written by loadtests/load.sh): ``LOAD_DIR/devices.txt`` (one ``point_code token`` per line),
``LOAD_DIR/cards.txt`` (one active family card serial per line), ``LOAD_ADMIN`` / ``LOAD_ADMIN_PASSWORD``.
Headless: ``locust -f loadtests/locustfile.py --headless -u 100 -r 20 -t 60s --csv var/locust/run``;
with the web UI: drop ``--headless`` and open http://127.0.0.1:8089.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from pathlib import Path

import yaml
from locust import HttpUser, between, task

LOAD_DIR = Path(os.environ.get("LOAD_DIR", "var/load"))
DEVICES = [line.split() for line in (LOAD_DIR / "devices.txt").read_text().splitlines() if line.strip()]
CARDS = [line.strip() for line in (LOAD_DIR / "cards.txt").read_text().splitlines() if line.strip()]
FOOD = ("sugar", "rice", "tea", "bread")
# The demo rules as JSON-ready data (YAML dates become ISO strings).
RULES_FILE = json.loads(
    json.dumps(
        yaml.load(
            (Path(__file__).resolve().parents[1] / "quota" / "rulesets" / "demo.yaml").read_text(
                encoding="utf-8"
            ),
            Loader=yaml.CSafeLoader,
        ),
        default=str,
    )
)


class Clerk(HttpUser):
    """A reader agent at a point: look up the tapped card's quota, then redeem (retrying the same id)."""

    weight = 8
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.point, token = random.choice(DEVICES)
        self.client.headers["Authorization"] = f"Bearer {token}"

    @task
    def tap_and_redeem(self) -> None:
        serial = random.choice(CARDS)
        quota = self.client.get(f"/api/v1/cards/{serial}/quota", name="/api/v1/cards/{serial}/quota")
        if quota.status_code != 200:
            return
        lines = [
            ln
            for ln in quota.json().get("lines", [])
            if ln.get("remaining_qty", 0) > 0 and ln.get("product_code") in FOOD
        ]
        if not lines:
            return
        line = random.choice(lines)
        step_qty = 1 if line["product_code"] == "bread" else 500
        body = {
            "id": str(uuid.uuid4()),
            "card_serial": serial,
            "product_code": line["product_code"],
            "quantity_qty": max(1, min(line["remaining_qty"], step_qty)),
            "point_code": self.point,
        }
        with self.client.post("/api/v1/redemptions", json=body, catch_response=True) as r:
            if r.status_code == 409:
                r.success()  # a refusal is a correct answer (point_not_bound, product_not_served, ...)
            elif r.status_code >= 500:
                r.failure(f"server error {r.status_code}")


class Citizen(HttpUser):
    """A family checking what is left (through a point's kiosk until citizen sign-in exists)."""

    weight = 3
    wait_time = between(1.0, 5.0)

    def on_start(self) -> None:
        _, token = random.choice(DEVICES)
        self.client.headers["Authorization"] = f"Bearer {token}"

    @task
    def check_quota(self) -> None:
        serial = random.choice(CARDS)
        self.client.get(f"/api/v1/cards/{serial}/quota", name="/api/v1/cards/{serial}/quota")


class Administrator(HttpUser):
    """An administrator previewing a rule change over the whole population."""

    weight = 1
    wait_time = between(5.0, 15.0)

    def on_start(self) -> None:
        r = self.client.post(
            "/api/v1/auth/token",
            data={
                "username": os.environ.get("LOAD_ADMIN", "admin"),
                "password": os.environ["LOAD_ADMIN_PASSWORD"],
            },
        )
        self.client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    @task
    def simulate(self) -> None:
        """Preview raising every per-person food amount by 10 % against the rules in force."""
        proposed = []
        for version in RULES_FILE["rules"]:
            rule = dict(version)
            amount = dict(rule.get("amount", {}))
            if "per_member_qty" in amount:
                amount["per_member_qty"] = int(amount["per_member_qty"] * 1.1)
            rule["amount"] = amount
            proposed.append(rule)
        self.client.post(
            "/api/v1/rules/simulate", json={"rules": proposed, "compare": True}, name="/api/v1/rules/simulate"
        )
