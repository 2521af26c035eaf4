"""The journal's hash chain: canonical entry bytes, seals, and a verification that names each change.

A seal covers a run of journal entries. It keeps, per entry, the SHA-256 of the entry's canonical
content (without its seq), so ``verify`` can name which entry was changed, removed, inserted or moved,
not just say "seal 12 is broken". ``entries_hash`` binds the seqs and content digests of the run;
``seal_hash = H(prev_hash ‖ entries_hash)`` chains each seal to the one before, so rewriting an old
entry together with its seal breaks every later seal. Pure: the repository supplies the rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

GENESIS_HASH = "0" * 64

ENTRY_FIELDS: tuple[str, ...] = (
    "entry_id",
    "kind",
    "result",
    "allowance_id",
    "holder_type",
    "holder_id",
    "product_code",
    "point_code",
    "card_serial",
    "quantity_qty",
    "price_minor",
    "remaining_qty",
    "payload_hash",
    "ref_entry_id",
    "actor",
    "reason",
    "created_at",
)


def _canonical_value(value: object) -> object:
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def entry_bytes(entry: Mapping[str, object]) -> bytes:
    """The canonical bytes of an entry's content: sorted JSON, UTF-8, UTC times to the microsecond."""
    content = {name: _canonical_value(entry.get(name)) for name in ENTRY_FIELDS}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_digest(entry: Mapping[str, object]) -> str:
    return hashlib.sha256(entry_bytes(entry)).hexdigest()


def entries_hash(digests: Sequence[tuple[int, str]]) -> str:
    """Hash of a seal's run: each entry's seq and content digest, in seq order."""
    h = hashlib.sha256()
    for seq, digest in digests:
        h.update(seq.to_bytes(8, "big"))
        h.update(bytes.fromhex(digest))
    return h.hexdigest()


def seal_hash(prev_hash: str, run_hash: str) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + bytes.fromhex(run_hash)).hexdigest()


@dataclass(frozen=True, slots=True)
class Seal:
    """One link of the chain; ``digests`` is the list of (seq, content digest) it covers."""

    first_seq: int
    last_seq: int
    entry_count: int
    entries_hash: str
    prev_hash: str
    seal_hash: str
    digests: tuple[tuple[int, str], ...]
    id: int | None = None


def make_seal(prev_hash: str, entries: Sequence[Mapping[str, object]]) -> Seal:
    """Seal ``entries`` (in seq order, at least one) after the seal whose hash is ``prev_hash``."""
    if not entries:
        raise ValueError("a seal covers at least one entry")
    digests = tuple((_seq(e), content_digest(e)) for e in entries)
    run = entries_hash(digests)
    return Seal(
        first_seq=digests[0][0],
        last_seq=digests[-1][0],
        entry_count=len(digests),
        entries_hash=run,
        prev_hash=prev_hash,
        seal_hash=seal_hash(prev_hash, run),
        digests=digests,
    )


def _seq(entry: Mapping[str, object]) -> int:
    seq = entry["seq"]
    if not isinstance(seq, int):
        raise TypeError("seq must be an int")
    return seq


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing ``verify`` found: ``kind`` is changed, removed, inserted, reordered or seal_broken."""

    kind: str
    seq: int
    seal_id: int | None = None
    detail: str = ""


@dataclass(slots=True)
class Report:
    seals_checked: int = 0
    entries_checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def verify_seal_links(seals: Sequence[Seal]) -> list[Finding]:
    """Check each seal's own hashes and its link to the previous seal."""
    findings: list[Finding] = []
    prev = GENESIS_HASH
    for seal in seals:
        run = entries_hash(seal.digests)
        if (
            run != seal.entries_hash
            or seal.prev_hash != prev
            or seal_hash(seal.prev_hash, seal.entries_hash) != seal.seal_hash
            or len(seal.digests) != seal.entry_count
        ):
            findings.append(Finding("seal_broken", seal.first_seq, seal.id, "seal hashes do not chain"))
        prev = seal.seal_hash
    return findings


def verify_entries(seal: Seal, entries: Sequence[Mapping[str, object]]) -> list[Finding]:
    """Compare the rows now in ``[first_seq, last_seq]`` with what the seal recorded.

    A row whose content now equals another sealed row's recorded content is named ``reordered``
    (rows swapped or moved); any other difference is ``changed``; a sealed seq with no row is
    ``removed``; a row at a seq the seal never saw is ``inserted``.
    """
    sealed = dict(seal.digests)
    current = {_seq(e): content_digest(e) for e in entries}
    by_content: dict[str, list[int]] = {}
    for seq, digest in seal.digests:
        by_content.setdefault(digest, []).append(seq)
    findings: list[Finding] = []
    for seq in sorted(sealed.keys() | current.keys()):
        was, now = sealed.get(seq), current.get(seq)
        if was == now:
            continue
        if now is None:
            findings.append(Finding("removed", seq, seal.id))
        elif was is None:
            findings.append(Finding("inserted", seq, seal.id))
        elif any(other != seq and current.get(other) != now for other in by_content.get(now, [])):
            moved_from = [other for other in by_content[now] if other != seq]
            findings.append(Finding("reordered", seq, seal.id, f"content sealed at seq {moved_from[0]}"))
        else:
            findings.append(Finding("changed", seq, seal.id))
    return findings
