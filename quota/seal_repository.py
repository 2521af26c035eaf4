"""SQL of the journal's seals: the last seal, new seals with their per-entry digests, seals in pages; and
the log line of each new seal (``log_sealed``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Column, Connection, Integer, MetaData, Table, Text, func, insert, select, text, update

from quota.dialect import is_pg
from quota.domain.chain import Seal, sealed_line
from quota.ledger_repository import JOURNAL
from quota.models import Seal as SealRow

SEALS = cast(Table, SealRow.__table__)
SEAL_META = MetaData()
SEAL_DIGESTS = Table(
    "seals", SEAL_META, Column("id", Integer, primary_key=True), Column("digests", Text)
)
# Every new seal is logged at INFO, one line (``chain.sealed_line``): the log shipped off the machine is a
# trail of anchors no SQL can rewrite. Its level is set here, not left to the root's (the API's logging
# keeps the root at WARNING), so whoever seals — the worker, cardctl, the API — writes the line.
seal_log = logging.getLogger("quota.seals")
seal_log.setLevel(logging.INFO)


def log_sealed(seals: Sequence[Seal]) -> None:
    """Log each new seal (after its transaction committed)."""
    for seal in seals:
        seal_log.info(sealed_line(seal))


# Seals ------------------------------------------------------------------------------------------
def last_seal(conn: Connection) -> tuple[int, str]:
    """(last sealed seq, its seal hash), or (0, genesis) before the first seal."""
    query = select(SEALS.c.last_seq, SEALS.c.seal_hash).order_by(SEALS.c.id.desc()).limit(1)
    row = conn.execute(query).first()
    return (0, "0" * 64) if row is None else (int(row[0]), str(row[1]))


def insert_seal(conn: Connection, seal: Seal, at: datetime) -> int:
    """Store a seal; returns its id."""
    conn.execute(
        insert(SEALS),
        [{"first_seq": seal.first_seq, "last_seq": seal.last_seq, "entry_count": seal.entry_count,
          "entries_hash": seal.entries_hash, "prev_hash": seal.prev_hash, "seal_hash": seal.seal_hash,
          "sealed_at": at}],
    )
    seal_id = conn.execute(select(func.max(SEALS.c.id))).scalar_one()
    conn.execute(
        update(SEAL_DIGESTS).where(SEAL_DIGESTS.c.id == seal_id)
        .values(digests=json.dumps([[s, d] for s, d in seal.digests]))
    )
    return int(seal_id)


def last_seal_bounds(conn: Connection) -> tuple[int, int] | None:
    """(id, last_seq) of the newest seal, or None before the first: what ``verify`` reads up to."""
    row = conn.execute(select(SEALS.c.id, SEALS.c.last_seq).order_by(SEALS.c.id.desc()).limit(1)).first()
    return None if row is None else (int(row[0]), int(row[1]))


def seals_upto(conn: Connection, upto_id: int, page_size: int = 20) -> Iterator[Seal]:
    """The seals with ``id <= upto_id`` in chain order, ``page_size`` at a time (each holds up to a
    sealer's ``max_entries`` digests, so the whole chain is never in memory)."""
    after = 0
    while True:
        rows = conn.execute(
            text("SELECT id, first_seq, last_seq, entry_count, entries_hash, prev_hash, seal_hash, digests "
                 "FROM seals WHERE id > :after AND id <= :upto ORDER BY id LIMIT :n"),
            {"after": after, "upto": upto_id, "n": page_size},
        ).all()
        for r in rows:
            yield Seal(first_seq=int(r[1]), last_seq=int(r[2]), entry_count=int(r[3]), entries_hash=r[4],
                       prev_hash=r[5], seal_hash=r[6], id=int(r[0]),
                       digests=tuple((int(s), str(d)) for s, d in json.loads(r[7] or "[]")))
        if len(rows) < page_size:
            return
        after = int(rows[-1][0])


def lock_sealing(conn: Connection) -> None:
    """Serialise sealers (PostgreSQL advisory lock for the transaction; SQLite has one writer)."""
    if is_pg(conn):
        conn.execute(text("SELECT pg_advisory_xact_lock(727001)"))


def committed_watermark(conn: Connection) -> int:
    """The highest seq below which every journal row is committed or rolled back.

    Seqs are handed out at INSERT but groups commit in any order, so a sealer must not read past a
    row still in flight. A SHARE lock waits for every inserting transaction to end and is held only
    for this one statement's transaction (the caller commits at once).
    """
    if is_pg(conn):
        conn.execute(text("LOCK TABLE journal IN SHARE MODE"))
    return int(conn.execute(select(func.coalesce(func.max(JOURNAL.c.seq), 0))).scalar_one())


