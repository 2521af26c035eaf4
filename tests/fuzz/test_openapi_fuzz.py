"""schemathesis against the project's own OpenAPI: every operation, as every role, on PostgreSQL with a
seeded population. No input — valid or not — may produce a server error (5xx)."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from sqlalchemy import text

from card_backend.app import create_app
from card_backend.auth.security import issue_access_token, new_device_token, token_sha256
from card_backend.config import Settings
from card_backend.seed import seed_population
from quota import rules_repository
from tests.fuzz import tally

EXAMPLES = int(os.environ.get("CARD_FUZZ_EXAMPLES", "12"))


@pytest.fixture
def fuzz_app(pg_engine):  # type: ignore[no-untyped-def]
    cfg = Settings(database_url=str(pg_engine.url), jwt_secret="fuzz-" + "f" * 44)
    from sqlalchemy.orm import Session

    seed_population(pg_engine, cfg, families=40, seed=3)
    with Session(pg_engine) as s, s.begin():
        rules_repository.install_demo(s)
    token = new_device_token()
    with pg_engine.begin() as conn:
        point_id = conn.scalar(text("SELECT min(id) FROM points"))
        conn.execute(
            text("INSERT INTO devices (point_id, name, token_sha256) VALUES (:p, 'fuzz', :h)"),
            {"p": point_id, "h": token_sha256(token)},
        )
    app = create_app(cfg, pg_engine)
    headers = {"anonymous": {}, "device": {"Authorization": f"Bearer {token}"}}
    for role in ("admin", "registrar", "supervisor", "clerk", "auditor"):
        jwt = issue_access_token(cfg, username=f"fuzz-{role}", role=role, point_id=point_id)  # type: ignore[arg-type]
        headers[role] = {"Authorization": f"Bearer {jwt}"}
    app.state.fuzz_headers = headers
    return app


def test_no_server_error_for_any_role(fuzz_app) -> None:  # type: ignore[no-untyped-def]
    """Each operation gets ``CARD_FUZZ_EXAMPLES`` generated cases (valid and invalid), each sent as
    every role; any 5xx is collected and reported with the request that caused it."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    failures: list[str] = []
    roles = fuzz_app.state.fuzz_headers

    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=operation.as_strategy())
        def run(case) -> None:  # type: ignore[no-untyped-def]
            for role, headers in roles.items():
                response = case.call(headers=headers)
                tally.REQUESTS += 1
                tally.BY_STATUS[response.status_code] += 1
                tally.OPERATIONS.add(f"{case.method} {case.path}")
                tally.ROLES.add(role)
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} as {role} -> "
                        f"{response.status_code}: {response.text[:200]} body={case.body!r:.200}"
                    )

        run()
    assert not failures, "\n".join(failures[:20])
