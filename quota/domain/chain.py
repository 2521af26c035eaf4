"""The journal's hash chain: canonical entry bytes, seals, and a verification that names each change.

A seal covers a contiguous range of seqs: from the previous seal's last seq + 1 (1 for the first) to its
own last entry's seq, whatever seqs inside it exist (rolled-back groups burn seqs, so gaps are normal).
It keeps, per entry, the SHA-256 of the entry's canonical content (without its seq), so ``verify`` can
name which entry was changed, removed, inserted or moved, not just say "seal 12 is broken".
``entries_hash`` binds the seqs and content digests of the run; ``seal_hash = H(prev_hash ‖ entries_hash)``
chains each seal to the one before, so rewriting an old entry together with its seal breaks every later
seal. The hashes do not cover the stored ``first_seq``/``last_seq``: ``verify`` takes each range from
the hashed digests (previous seal's last digest + 1 to this seal's last digest), so seals made when
``first_seq`` was the next existing seq verify the same way, and a row put into a gap between two
seals' entries, or below the first seal, is named. Pure: the repository supplies the rows.

Nothing inside the database records where the chain ends: whoever can write to it can delete the newest
seals with the rows they covered, or edit a row and seal it afresh, and the shorter chain verifies. So
``verify`` reports the *head* it verified (``ChainHead``: last seal id, its last seq, its hash), every new
seal is logged (``sealed_line``), and an auditor keeps heads outside the database as *anchors*
(``Anchor``, ``ID:HASH``): verified with anchors, the chain must still hold seal ID with exactly that hash
(``anchor_missing``, ``anchor_mismatch``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
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

    def with_id(self, seal_id: int) -> Seal:
        """The seal as stored under ``seal_id``."""
        return replace(self, id=seal_id)


def make_seal(prev_hash: str, entries: Sequence[Mapping[str, object]], first_seq: int | None = None) -> Seal:
    """Seal ``entries`` (in seq order, at least one) after the seal whose hash is ``prev_hash``.

    ``first_seq`` is where the range starts (the previous seal's last seq + 1); by default the first
    entry's seq."""
    if not entries:
        raise ValueError("a seal covers at least one entry")
    digests = tuple((_seq(e), content_digest(e)) for e in entries)
    if first_seq is not None and first_seq > digests[0][0]:
        raise ValueError("first_seq is after the first entry")
    run = entries_hash(digests)
    return Seal(
        first_seq=digests[0][0] if first_seq is None else first_seq,
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


_ANCHOR = re.compile(r"^\s*([0-9]{1,18})\s*:\s*([0-9a-fA-F]{64})\s*$")


@dataclass(frozen=True, slots=True)
class Anchor:
    """A seal an auditor recorded outside the database: the chain must hold seal ``seal_id`` with
    exactly ``seal_hash``. Written ``ID:HASH`` (as ``ChainHead.anchor`` and the seal log give it)."""

    seal_id: int
    seal_hash: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """``ID:HASH`` (a seal id, a colon, the seal's 64 hex digit hash); ValueError otherwise."""
        match = _ANCHOR.match(text)
        if match is None:
            raise ValueError(f"an anchor is ID:HASH (a seal id, its 64 hex digit hash), not {text[:80]!r}")
        return cls(int(match.group(1)), match.group(2).lower())

    def __str__(self) -> str:
        return f"{self.seal_id}:{self.seal_hash}"


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The newest seal a verification read: ``anchor`` is what to keep outside the database."""

    seal_id: int
    last_seq: int
    seal_hash: str

    @property
    def anchor(self) -> str:
        return str(Anchor(self.seal_id, self.seal_hash))


def sealed_line(seal: Seal) -> str:
    """The one line a new seal is logged with: its id, seqs and hash, and the anchor to keep."""
    return (f"journal sealed: seal {seal.id} seqs {seal.first_seq}..{seal.last_seq} "
            f"({seal.entry_count} entries) hash {seal.seal_hash} anchor {seal.id}:{seal.seal_hash}")


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing ``verify`` found: ``kind`` is changed, removed, inserted, reordered, unsealed,
    seal_broken, anchor_missing or anchor_mismatch. ``unsealed`` is a row at a seq no seal's range holds
    (below 1, where no seq is ever handed out); ``inserted`` is a row inside a seal's range that the seal
    did not record (e.g. in a gap left by a rolled-back group). ``anchor_missing``: the chain holds no
    seal of an anchor's id (the newest seals were removed; ``seq`` 0); ``anchor_mismatch``: the seal of
    that id has another hash (rewritten, or sealed afresh; ``seq`` is its first). ``entry_id`` is the row
    now at ``seq``, if there is one."""

    kind: str
    seq: int
    seal_id: int | None = None
    detail: str = ""
    entry_id: str | None = None


@dataclass(slots=True)
class Report:
    seals_checked: int = 0
    entries_checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    head: ChainHead | None = None  # the newest seal read (None: no seal yet)
    anchors_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings


def covered_last_seq(seal: Seal) -> int:
    """The last seq of a seal's range, from its hashed digests (the stored ``last_seq`` is not hashed)."""
    return seal.digests[-1][0] if seal.digests else seal.last_seq


def link_findings(seal: Seal, prev_hash: str, prev_last_seq: int) -> list[Finding]:
    """Check one seal's own hashes, its link to the previous seal and that its stored range agrees
    with its digests: ``prev_last_seq < first_seq <= first digest`` and ``last_seq`` = last digest."""
    run = entries_hash(seal.digests)
    if (
        run != seal.entries_hash
        or seal.prev_hash != prev_hash
        or seal_hash(seal.prev_hash, seal.entries_hash) != seal.seal_hash
        or len(seal.digests) != seal.entry_count
    ):
        return [Finding("seal_broken", seal.first_seq, seal.id, "seal hashes do not chain")]
    seqs = [seq for seq, _ in seal.digests]
    if (
        not seqs
        or seqs != sorted(set(seqs))
        or not prev_last_seq < seal.first_seq <= seqs[0]
        or seal.last_seq != seqs[-1]
    ):
        return [Finding("seal_broken", seal.first_seq, seal.id, "seal range does not follow its entries")]
    return []


def verify_seal_links(seals: Sequence[Seal]) -> list[Finding]:
    """Check each seal's own hashes and its link to the previous seal."""
    findings: list[Finding] = []
    prev, prev_last = GENESIS_HASH, 0
    for seal in seals:
        findings.extend(link_findings(seal, prev, prev_last))
        prev, prev_last = seal.seal_hash, max(prev_last, covered_last_seq(seal))
    return findings


class _RangeCheck:
    """The rows now in one seal's range, compared with what the seal recorded.

    Only rows at sealed seqs are kept (the seal bounds them); a row at any other seq is named at once.
    """

    def __init__(self, seal: Seal) -> None:
        self.seal = seal
        self.sealed = dict(seal.digests)
        self.current: dict[int, tuple[str, str | None]] = {}
        self.findings: list[Finding] = []

    def add(self, entry: Mapping[str, object]) -> None:
        seq, entry_id = _seq(entry), _entry_id(entry)
        if seq in self.sealed:
            self.current[seq] = (content_digest(entry), entry_id)
        else:
            self.findings.append(Finding("inserted", seq, self.seal.id, "not in the seal", entry_id))

    def finish(self) -> list[Finding]:
        by_content: dict[str, list[int]] = {}
        for seq, digest in self.seal.digests:
            by_content.setdefault(digest, []).append(seq)
        now_at = {seq: digest for seq, (digest, _) in self.current.items()}
        for seq, was in self.seal.digests:
            if seq not in self.current:
                self.findings.append(Finding("removed", seq, self.seal.id))
                continue
            now, entry_id = self.current[seq]
            if was == now:
                continue
            moved_from = [o for o in by_content.get(now, []) if o != seq and now_at.get(o) != now]
            if moved_from:
                self.findings.append(Finding("reordered", seq, self.seal.id,
                                             f"content sealed at seq {moved_from[0]}", entry_id))
            else:
                self.findings.append(Finding("changed", seq, self.seal.id, "", entry_id))
        return sorted(self.findings, key=lambda f: f.seq)


def verify_entries(seal: Seal, entries: Iterable[Mapping[str, object]]) -> list[Finding]:
    """Compare the rows now in one seal's range with what the seal recorded.

    A row whose content now equals another sealed row's recorded content is named ``reordered``
    (rows swapped or moved); any other difference is ``changed``; a sealed seq with no row is
    ``removed``; a row at a seq the seal never saw is ``inserted``.
    """
    check = _RangeCheck(seal)
    for entry in entries:
        check.add(entry)
    return check.finish()


def verify_journal(seals: Iterable[Seal], entries: Iterable[Mapping[str, object]],
                   anchors: Iterable[Anchor] = ()) -> Report:
    """One ordered pass over the seals (in chain order) and the journal rows (in seq order, up to the
    last sealed seq): every row lands in the one seal range that holds its seq, or is ``unsealed``.
    Each of ``anchors`` must name a seal of the chain with exactly its hash (``anchor_missing``,
    ``anchor_mismatch``); the report's ``head`` is the last seal read.

    Both inputs are consumed lazily, so the caller can stream them page by page; only one seal's
    recorded digests and the rows at its sealed seqs are held at a time.
    """
    report = Report()
    wanted: dict[int, set[str]] = {}
    for anchor in anchors:
        wanted.setdefault(anchor.seal_id, set()).add(anchor.seal_hash.lower())
    report.anchors_checked = sum(len(hashes) for hashes in wanted.values())
    rows = iter(entries)
    pending = next(rows, None)
    prev_hash, prev_last = GENESIS_HASH, 0
    for seal in seals:
        report.seals_checked += 1
        report.findings.extend(link_findings(seal, prev_hash, prev_last))
        if seal.id is not None:
            report.head = ChainHead(seal.id, seal.last_seq, seal.seal_hash)
            for expected in sorted(wanted.pop(seal.id, set()) - {seal.seal_hash}):
                report.findings.append(Finding("anchor_mismatch", seal.first_seq, seal.id,
                                               f"anchor {seal.id}:{expected}, chain has {seal.seal_hash}"))
        last = covered_last_seq(seal)
        check = _RangeCheck(seal)
        while pending is not None and _seq(pending) <= last:
            report.entries_checked += 1
            if _seq(pending) <= prev_last:  # below the first seal's range
                report.findings.append(_unsealed(pending))
            else:
                check.add(pending)
            pending = next(rows, None)
        report.findings.extend(check.finish())
        prev_hash, prev_last = seal.seal_hash, max(prev_last, last)
    while pending is not None:  # past the last seal's entries
        report.entries_checked += 1
        report.findings.append(_unsealed(pending))
        pending = next(rows, None)
    head = "no seal yet" if report.head is None else f"the head is seal {report.head.seal_id}"
    for seal_id, hashes in sorted(wanted.items()):
        for expected in sorted(hashes):
            report.findings.append(Finding("anchor_missing", 0, seal_id,
                                           f"anchor {seal_id}:{expected}: the chain has no seal {seal_id} "
                                           f"({head})"))
    return report


def _unsealed(entry: Mapping[str, object]) -> Finding:
    return Finding("unsealed", _seq(entry), None, "no seal's range holds this seq", _entry_id(entry))


def _entry_id(entry: Mapping[str, object]) -> str | None:
    value = entry.get("entry_id")
    return None if value is None else str(value)
