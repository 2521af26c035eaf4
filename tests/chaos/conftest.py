from __future__ import annotations

import pytest


@pytest.fixture
def chaos_seconds(request: pytest.FixtureRequest) -> float:
    return 150.0 if request.config.getoption("--chaos-profile") == "long" else 25.0
