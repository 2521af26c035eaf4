"""The chain's newest seals, anchored outside the database: removing them or sealing an edit afresh is
caught.

Nothing in the database says where the chain ends, so the newest seal deleted with the rows it covered,
or a sealed row edited and its seal made again, leaves a chain that verifies. ``verify`` therefore
reports the head it verified (seal id, last seq, hash), every new seal is logged, and a verification
given anchors (``ID:HASH``, kept by an auditor) names each the chain no longer holds
(``anchor_missing``) or holds with another hash (``anchor_mismatch``): the service, the auditor endpoint
and ``cardctl journal verify --anchor`` (exit 1).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from card_backend.auth.principal import Role
from quota.domain.chain import Anchor
from quota.engine import GroupCommitEngine
from quota.redemption import Redemption, StaticTerms
from quota.service import LedgerService
from tests.integration.ledger_seed import NOW, TERMS, Population, seed

CARDCTL = Path(sys.executable).with_name("cardctl")


def redeem(svc: LedgerService, pop: Population, n: int) -> None:
    for k in range(n):
        card = pop.family_card[1 + k % 3]
        assert svc.redeem(Redemption(str(uuid.uuid4()), card, "sugar", 100 + k, "P1")).result == "ok"


@pytest.fixture
def ledger(engine: Engine) -> Iterator[tuple[LedgerService, Population]]:
    """Six entries in two seals of three."""
    pop = seed(engine)
    terms = StaticTerms(TERMS)
    with GroupCommitEngine(engine, terms, clock=lambda: NOW) as eng:
        svc = LedgerService(engine, terms, eng, clock=lambda: NOW)
        redeem(svc, pop, 6)
        assert [(s.id, s.first_seq, s.last_seq) for s in svc.seal(max_entries=3)] == [(1, 1, 3), (2, 4, 6)]
        yield svc, pop


@pytest.fixture
def sealed(ledger: tuple[LedgerService, Population]) -> LedgerService:
    return ledger[0]


def head_anchor(svc: LedgerService) -> Anchor:
    report = svc.verify()
    assert report.ok and report.head is not None
    return Anchor.parse(report.head.anchor)


def test_verify_reports_the_head_and_a_clean_chain_holds_its_anchors(
    engine: Engine, ledger: tuple[LedgerService, Population]
) -> None:
    sealed, pop = ledger
    report = sealed.verify()
    assert report.ok and report.head is not None
    with engine.connect() as conn:
        newest = conn.execute(text("SELECT id, last_seq, seal_hash FROM seals ORDER BY id DESC LIMIT 1"))\
            .one()
    assert (report.head.seal_id, report.head.last_seq, report.head.seal_hash) == tuple(newest)
    assert report.head.anchor == f"{newest[0]}:{newest[2]}"
    first = Anchor.parse(report.head.anchor)
    redeem(sealed, pop, 2)
    assert len(sealed.seal()) == 1
    later = sealed.verify([first])  # an older anchor still holds as the chain grows
    assert later.ok and later.anchors_checked == 1 and later.head is not None and later.head.seal_id == 3
    both = sealed.verify([first, Anchor.parse(later.head.anchor.upper())])
    assert both.ok and both.anchors_checked == 2


def test_the_newest_seal_removed_with_its_entries_is_caught_by_an_anchor(
    engine: Engine, sealed: LedgerService
) -> None:
    anchor = head_anchor(sealed)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM journal WHERE seq BETWEEN 4 AND 6"))
        conn.execute(text("DELETE FROM seals WHERE id = :i"), {"i": anchor.seal_id})
    assert sealed.verify().ok  # the shorter chain is whole: only an anchor kept outside can tell
    report = sealed.verify([anchor])
    assert not report.ok and report.head is not None and report.head.seal_id == 1
    assert [(f.kind, f.seal_id, f.seq) for f in report.findings] == [("anchor_missing", anchor.seal_id, 0)]
    assert report.findings[0].detail == (f"anchor {anchor}: the chain has no seal {anchor.seal_id} "
                                         "(the head is seal 1)")


def test_an_entry_edited_and_sealed_again_is_caught_by_an_anchor(
    engine: Engine, sealed: LedgerService
) -> None:
    anchor = head_anchor(sealed)
    with engine.begin() as conn:
        conn.execute(text("UPDATE journal SET quantity_qty = 1 WHERE seq = 6"))
        conn.execute(text("DELETE FROM seals WHERE id = :i"), {"i": anchor.seal_id})
    assert len(sealed.seal()) == 1  # the worker's sealer seals the edited rows afresh
    assert sealed.verify().ok
    report = sealed.verify([anchor])
    assert not report.ok
    ((kind, seal_id),) = [(f.kind, f.seal_id) for f in report.findings]
    # SQLite hands the freed id out again (another hash under it); PostgreSQL's sequence a new one
    assert (kind, seal_id) == (("anchor_mismatch" if engine.dialect.name == "sqlite" else "anchor_missing"),
                               anchor.seal_id)


def test_a_wrong_hash_is_named_and_only_it(sealed: LedgerService) -> None:
    right = head_anchor(sealed)
    wrong = Anchor(1, "ab" * 32)
    report = sealed.verify([right, wrong, Anchor(9, "cd" * 32)])
    assert report.anchors_checked == 3
    assert [(f.kind, f.seal_id, f.seq) for f in report.findings] == [("anchor_mismatch", 1, 1),
                                                                     ("anchor_missing", 9, 0)]


@pytest.mark.parametrize("text_", ["", "12", "12:abc", "x:" + "a" * 64, "1:" + "g" * 64, "1:" + "a" * 65])
def test_an_anchor_is_id_colon_64_hex_digits(text_: str) -> None:
    with pytest.raises(ValueError):
        Anchor.parse(text_)
    assert Anchor.parse(" 7:" + "AB" * 32) == Anchor(7, "ab" * 32)


def test_each_new_seal_is_logged_with_its_anchor(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    pop = seed(engine)
    terms = StaticTerms(TERMS)
    with GroupCommitEngine(engine, terms, clock=lambda: NOW) as eng:
        svc = LedgerService(engine, terms, eng, clock=lambda: NOW)
        redeem(svc, pop, 5)
        with caplog.at_level(logging.INFO, logger="quota.seals"):
            seals = svc.seal(max_entries=3)
        lines = [r.getMessage() for r in caplog.records if r.name == "quota.seals"]
        assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "quota.seals")
        assert lines == [f"journal sealed: seal {s.id} seqs {s.first_seq}..{s.last_seq} ({s.entry_count} "
                         f"entries) hash {s.seal_hash} anchor {s.id}:{s.seal_hash}" for s in seals]
        logged = [Anchor.parse(line.rsplit(" ", 1)[1]) for line in lines]
        assert svc.verify(logged).ok


def test_auditors_verify_with_anchors_over_http_and_cardctl_exits_1(
    engine: Engine, client: TestClient, auth: Callable[..., dict[str, str]], pop: Population, tmp_path: Path
) -> None:
    svc: LedgerService = client.app.state.ledger  # type: ignore[attr-defined]
    redeem(svc, pop, 4)
    auditor = auth(Role.AUDITOR)
    sealed = client.post("/api/v1/journal/seal", headers=auditor).json()
    assert sealed["seals"] == 1 and sealed["anchor"].startswith("1:")
    clean = client.get("/api/v1/journal/verify", params={"anchor": sealed["anchor"]}, headers=auditor).json()
    assert clean["ok"] is True and clean["anchors_checked"] == 1
    assert clean["head"] == {"seal_id": 1, "last_seq": 4, "seal_hash": sealed["anchor"][2:],
                             "anchor": sealed["anchor"]}
    bad = client.get("/api/v1/journal/verify", params={"anchor": "1:xyz"}, headers=auditor)
    assert bad.status_code == 422 and bad.json()["error"] == "bad_anchor"
    assert client.get("/api/v1/journal/verify", headers=auth(Role.CLERK)).status_code == 403

    env = {**os.environ, "CARD_DATABASE_URL": engine.url.render_as_string(hide_password=False)}

    def cardctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CARDCTL), "journal", *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)

    redeem(svc, pop, 2)
    made = cardctl("seal")
    assert made.returncode == 0, made.stderr
    second = client.get("/api/v1/journal/verify", headers=auditor).json()["head"]
    assert second["seal_id"] == 2
    assert f"journal sealed: seal 2 seqs 5..6 (2 entries) hash {second['seal_hash']}" in made.stderr  # logged
    ok = cardctl("verify", "--anchor", sealed["anchor"], "--anchor", second["anchor"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "journal ok: 2 seals, 6 entries checked, 2 anchors checked" in ok.stdout
    assert f"chain head: seal 2 last_seq 6 hash {second['seal_hash']}" in ok.stdout
    assert f"--anchor {second['anchor']}" in ok.stdout
    assert cardctl("verify", "--anchor", "2").returncode == 2  # not ID:HASH

    with engine.begin() as conn:  # the newest seal and its entries removed
        conn.execute(text("DELETE FROM journal WHERE seq >= 5"))
        conn.execute(text("DELETE FROM seals WHERE id = 2"))
    both = [("anchor", sealed["anchor"]), ("anchor", second["anchor"])]
    body = client.get("/api/v1/journal/verify", params=both, headers=auditor).json()
    assert body["ok"] is False and body["head"]["seal_id"] == 1 and body["anchors_checked"] == 2
    assert [(f["kind"], f["seal_id"], f["seq"]) for f in body["findings"]] == [("anchor_missing", 2, 0)]
    run = cardctl("verify", "--anchor", second["anchor"])
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"anchor_missing seq=0 entry=None seal=2 anchor {second['anchor']}" in run.stdout
    assert "journal TAMPERED: 1 seals, 4 entries checked, 1 anchors checked" in run.stdout
