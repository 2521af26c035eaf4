"""The hash chain names each altered, removed, inserted or moved entry."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from quota.domain.chain import (
    ENTRY_FIELDS,
    GENESIS_HASH,
    content_digest,
    make_seal,
    verify_entries,
    verify_journal,
    verify_seal_links,
)
from quota.ledger_repository import JOURNAL

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def entries(first: int, count: int) -> list[dict[str, object]]:
    return [
        {"seq": seq, "entry_id": f"e{seq}", "kind": "redeem", "result": "ok", "allowance_id": 1,
         "holder_type": "family", "holder_id": 1, "product_code": "sugar", "point_code": "P1",
         "card_serial": "C1", "quantity_qty": seq * 10, "price_minor": 5, "remaining_qty": 100,
         "payload_hash": "ab" * 32, "created_at": T0 + timedelta(seconds=seq)}
        for seq in range(first, first + count)
    ]


def test_untouched_entries_verify() -> None:
    rows = entries(1, 5)
    seal = make_seal(GENESIS_HASH, rows)
    assert seal.entry_count == 5 and seal.first_seq == 1 and seal.last_seq == 5
    assert verify_entries(seal, rows) == [] and verify_seal_links([seal]) == []


def test_canonical_bytes_ignore_timezone_representation_but_not_time() -> None:
    row = entries(1, 1)[0]
    naive = dict(row, created_at=T0.replace(tzinfo=None) + timedelta(seconds=1))
    assert content_digest(naive) == content_digest(row)
    assert content_digest(dict(row, created_at=T0)) != content_digest(row)


def test_the_seal_covers_every_journal_column_but_seq() -> None:
    # a column the digest leaves out could be rewritten by SQL unseen (seq is bound by the seal itself)
    assert {c.name for c in JOURNAL.columns} - {"seq"} == set(ENTRY_FIELDS)


def test_changed_removed_inserted_and_reordered_are_each_named() -> None:
    rows = entries(1, 6)
    seal = make_seal(GENESIS_HASH, [r for r in rows if r["seq"] != 4])  # seq 4 rolled back: a gap
    now = [dict(r) for r in rows if r["seq"] not in (2, 4)]  # seq 2 removed
    now.append(dict(rows[3]))  # seq 4 inserted into the gap
    now[0]["quantity_qty"] = 1  # seq 1 changed
    five = next(r for r in now if r["seq"] == 5)
    six = next(r for r in now if r["seq"] == 6)
    five_content = {k: v for k, v in five.items() if k != "seq"}
    five.update({k: v for k, v in six.items() if k != "seq"})
    six.update(five_content)  # 5 and 6 swapped
    found = {(f.kind, f.seq) for f in verify_entries(seal, now)}
    assert found == {("changed", 1), ("removed", 2), ("inserted", 4), ("reordered", 5), ("reordered", 6)}


def test_a_rewritten_seal_breaks_the_chain() -> None:
    first = make_seal(GENESIS_HASH, entries(1, 3))
    second = make_seal(first.seal_hash, entries(4, 3))
    assert verify_seal_links([first, second]) == []
    forged = make_seal(GENESIS_HASH, [dict(e, quantity_qty=0) for e in entries(1, 3)])
    broken = verify_seal_links([forged, second])
    assert [(f.kind, f.seq) for f in broken] == [("seal_broken", 4)]
    tampered_digests = replace(first, digests=first.digests[:2])
    assert verify_seal_links([tampered_digests])[0].kind == "seal_broken"


def test_every_row_up_to_the_last_seal_lands_in_a_range_or_is_named() -> None:
    rows = entries(-1, 12)  # seqs -1..10
    first = make_seal(GENESIS_HASH, [r for r in rows if 1 <= r["seq"] <= 3])
    second = make_seal(first.seal_hash, [r for r in rows if r["seq"] >= 7], first_seq=4)  # 4..6 burnt
    assert (second.first_seq, second.last_seq) == (4, 10)
    clean = [r for r in rows if r["seq"] >= 1 and r["seq"] not in (4, 5, 6)]
    report = verify_journal([first, second], clean)
    assert report.ok and (report.seals_checked, report.entries_checked) == (2, 7)
    report = verify_journal([first, second], rows)  # -1, 0 and the gap 4..6 filled by SQL
    assert [(f.kind, f.seq, f.entry_id) for f in report.findings] == [
        ("unsealed", -1, "e-1"), ("unsealed", 0, "e0"),
        ("inserted", 4, "e4"), ("inserted", 5, "e5"), ("inserted", 6, "e6"),
    ]
    assert report.entries_checked == 12


def test_a_seal_whose_range_began_at_its_first_entry_still_verifies() -> None:
    first = make_seal(GENESIS_HASH, entries(1, 3))
    second = make_seal(first.seal_hash, entries(7, 2))  # first_seq 7, as seals were made before
    assert second.first_seq == 7 and verify_journal([first, second], entries(1, 3) + entries(7, 2)).ok
    assert {(f.kind, f.seq) for f in verify_journal([first, second], entries(1, 8)).findings} == {
        ("inserted", 4), ("inserted", 5), ("inserted", 6)}


def test_a_stored_range_that_disagrees_with_the_digests_breaks_the_seal() -> None:
    first = make_seal(GENESIS_HASH, entries(1, 3))
    second = make_seal(first.seal_hash, entries(4, 3))
    assert [f.kind for f in verify_seal_links([first, replace(second, first_seq=3)])] == ["seal_broken"]
    assert [f.kind for f in verify_seal_links([first, replace(second, last_seq=5)])] == ["seal_broken"]
