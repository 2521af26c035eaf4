"""The demo tap takes the admin password from the environment: a generated password may begin with "-"
(``secrets.token_urlsafe``), which as a command-line value argparse took for an option, and the demo then
stopped before its tap."""

from __future__ import annotations

import pytest

from reader_agent.demo import parse_args


def test_a_password_beginning_with_a_dash_comes_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "-tS4zkyrrJwkkZn8")
    assert parse_args([]).password == "-tS4zkyrrJwkkZn8"
    assert parse_args(["--password=other"]).password == "other"


def test_no_password_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)
    with pytest.raises(SystemExit):
        parse_args([])
    assert "DEMO_ADMIN_PASSWORD" in capsys.readouterr().err
