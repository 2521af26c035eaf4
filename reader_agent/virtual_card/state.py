"""What a virtual card remembers between insertions: its key, counter and records.

A real card keeps these in EEPROM; the virtual one keeps them in
var/cards/<serial>.json (mode 0600), written atomically after every counter step
so the counter only grows even if the process dies mid-tap. The private key is
in that file and nowhere else: never in the repo, never printed or logged.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from reader_agent import protocol
from reader_agent.protocol import HolderType

SERIAL_PATTERN = re.compile(r"^[A-Z0-9-]{1,16}$")
DEFAULT_STATE_DIR = Path("var/cards")


class CardStateError(Exception):
    """A card's state file is missing, invalid or would be overwritten."""


@dataclass
class BalanceSlot:
    certificate: bytes
    spent_qty: int = 0


@dataclass
class CardState:
    serial: str
    holder_type: HolderType
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    counter: int = 0
    card_certificate: bytes | None = None
    balances: dict[int, BalanceSlot] = field(default_factory=dict)

    @property
    def public_key(self) -> bytes:
        return protocol.public_key_bytes(self.private_key)

    def to_json(self) -> dict[str, object]:
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return {
            "serial": self.serial,
            "holder_type": self.holder_type.value,
            "private_key_pem": pem.decode("ascii"),
            "counter": self.counter,
            "card_certificate": self.card_certificate.hex() if self.card_certificate else None,
            "balances": {
                str(record): {"certificate": slot.certificate.hex(), "spent_qty": slot.spent_qty}
                for record, slot in sorted(self.balances.items())
            },
        }

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> CardState:
        try:
            key = serialization.load_pem_private_key(str(raw["private_key_pem"]).encode("ascii"), None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise CardStateError("card key is not an EC key")
            cert = raw.get("card_certificate")
            balances_raw = raw.get("balances") or {}
            assert isinstance(balances_raw, dict)
            return cls(
                serial=str(raw["serial"]),
                holder_type=HolderType(raw["holder_type"]),
                private_key=key,
                counter=int(str(raw["counter"])),
                card_certificate=bytes.fromhex(str(cert)) if cert else None,
                balances={
                    int(record): BalanceSlot(bytes.fromhex(slot["certificate"]), int(slot["spent_qty"]))
                    for record, slot in balances_raw.items()
                },
            )
        except (KeyError, ValueError, TypeError, AssertionError) as exc:
            raise CardStateError(f"invalid card state: {exc}") from exc


class CardStore:
    """The folder of card state files (default var/cards)."""

    def __init__(self, directory: Path = DEFAULT_STATE_DIR) -> None:
        self.directory = directory

    def path(self, serial: str) -> Path:
        if not SERIAL_PATTERN.match(serial):
            raise CardStateError("serial must be 1-16 characters of A-Z, 0-9 and '-'")
        return self.directory / f"{serial}.json"

    def exists(self, serial: str) -> bool:
        return self.path(serial).exists()

    def load(self, serial: str) -> CardState:
        path = self.path(serial)
        try:
            raw = json.loads(path.read_text("utf-8"))
        except FileNotFoundError as exc:
            raise CardStateError(f"card {serial} is not personalised (no {path})") from exc
        except json.JSONDecodeError as exc:
            raise CardStateError(f"{path} is not JSON") from exc
        return CardState.from_json(raw)

    def save(self, state: CardState) -> None:
        path = self.path(state.serial)
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{state.serial}.", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o600)
                json.dump(state.to_json(), handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def personalise(self, serial: str, holder_type: HolderType, *, overwrite: bool = False) -> CardState:
        """Generate the card's key pair "on the card" and write serial, key and counter 0."""
        if self.exists(serial) and not overwrite:
            raise CardStateError(f"card {serial} is already personalised")
        state = CardState(serial=serial, holder_type=holder_type, private_key=protocol.generate_private_key())
        self.save(state)
        return state
