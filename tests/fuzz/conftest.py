from __future__ import annotations

import pytest

from tests.fuzz import tally


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if tally.REQUESTS:
        server_errors = sum(n for status, n in tally.BY_STATUS.items() if status >= 500)
        terminalreporter.write_line(
            f"schemathesis: {tally.REQUESTS} requests tried over {len(tally.OPERATIONS)} operations as "
            f"{len(tally.ROLES)} roles; 5xx answers: {server_errors}; "
            f"by status: {dict(sorted(tally.BY_STATUS.items()))}"
        )
