"""Minimal BER-TLV for the card protocol: one-byte tags, short or 0x81/0x82 lengths.

Hand-written (about 60 lines) rather than pulled from a library so that every
malformed input ends in one named error, `MalformedDataError`, which the APDU
layer and the backend can catch without guessing at IndexError or struct.error.
"""

from __future__ import annotations

from collections.abc import Iterable


class MalformedDataError(ValueError):
    """Bytes from a card or a certificate do not follow docs/card-protocol.md."""


def encode(tag: int, value: bytes) -> bytes:
    """One TLV: single-byte tag, definite length (short form below 128)."""
    if not 0 < tag < 0x100 or tag & 0x1F == 0x1F:
        raise ValueError(f"tag {tag:#x} is not a single-byte tag")
    size = len(value)
    if size < 0x80:
        head = bytes([size])
    elif size < 0x100:
        head = bytes([0x81, size])
    elif size < 0x10000:
        head = bytes([0x82, size >> 8, size & 0xFF])
    else:
        raise ValueError("TLV value too long")
    return bytes([tag]) + head + value


def encode_all(items: Iterable[tuple[int, bytes]]) -> bytes:
    return b"".join(encode(tag, value) for tag, value in items)


def parse(data: bytes) -> list[tuple[int, bytes]]:
    """Split a run of TLVs; any truncation, padding or multi-byte tag is refused."""
    items: list[tuple[int, bytes]] = []
    pos = 0
    end = len(data)
    while pos < end:
        tag = data[pos]
        if tag in (0x00, 0xFF) or tag & 0x1F == 0x1F:
            raise MalformedDataError(f"unsupported tag byte {tag:#04x} at offset {pos}")
        pos += 1
        if pos >= end:
            raise MalformedDataError("TLV truncated before its length")
        first = data[pos]
        pos += 1
        if first < 0x80:
            size = first
        elif first in (0x81, 0x82):
            count = first - 0x80
            if pos + count > end:
                raise MalformedDataError("TLV truncated inside its length")
            size = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        else:
            raise MalformedDataError(f"unsupported length byte {first:#04x}")
        if pos + size > end:
            raise MalformedDataError(f"TLV {tag:#04x} claims {size} bytes, {end - pos} left")
        items.append((tag, bytes(data[pos : pos + size])))
        pos += size
    return items


def as_dict(data: bytes, *, required: Iterable[int] = ()) -> dict[int, bytes]:
    """Parse and index by tag; duplicated tags or missing required tags are malformed."""
    found: dict[int, bytes] = {}
    for tag, value in parse(data):
        if tag in found:
            raise MalformedDataError(f"tag {tag:#04x} appears twice")
        found[tag] = value
    missing = [tag for tag in required if tag not in found]
    if missing:
        raise MalformedDataError("missing tags " + ", ".join(f"{t:#04x}" for t in missing))
    return found


def uint(value: bytes, size: int, what: str) -> int:
    """A fixed-size big-endian unsigned integer field."""
    if len(value) != size:
        raise MalformedDataError(f"{what} must be {size} bytes, got {len(value)}")
    return int.from_bytes(value, "big")


def text(value: bytes, what: str, *, max_len: int = 32) -> str:
    """A printable ASCII field (serials, product and point codes)."""
    if not 0 < len(value) <= max_len:
        raise MalformedDataError(f"{what} must be 1..{max_len} bytes")
    try:
        decoded = value.decode("ascii")
    except UnicodeDecodeError as exc:
        raise MalformedDataError(f"{what} is not ASCII") from exc
    if not decoded.isprintable():
        raise MalformedDataError(f"{what} is not printable")
    return decoded
