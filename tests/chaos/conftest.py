from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-profile",
        default="short",
        choices=("short", "long"),
        help="short (CI: ~25 s of faults) or long (make chaos: ~3 min)",
    )


@pytest.fixture
def chaos_seconds(request: pytest.FixtureRequest) -> float:
    return 150.0 if request.config.getoption("--chaos-profile") == "long" else 25.0
