"""Governorates: the configured list is the only authority (``settings.governorates``).

The Arabic names and population weights describe the default list (Syria's 14 governorates) and are used
by the synthetic population; a deployment with another list still validates against its own settings.
"""

from __future__ import annotations

from card_backend.config import Settings
from card_backend.errors import UnknownGovernorate

# Arabic name, Latin name and an approximate share of the population (per mille; sums to 1000).
SYRIA: dict[str, tuple[str, str, int]] = {
    "damascus": ("دمشق", "Damascus", 95),
    "rif_dimashq": ("ريف دمشق", "Rif Dimashq", 150),
    "aleppo": ("حلب", "Aleppo", 220),
    "homs": ("حمص", "Homs", 85),
    "hama": ("حماة", "Hama", 80),
    "latakia": ("اللاذقية", "Latakia", 55),
    "tartus": ("طرطوس", "Tartus", 45),
    "idlib": ("إدلب", "Idlib", 80),
    "raqqa": ("الرقة", "Raqqa", 45),
    "deir_ez_zor": ("دير الزور", "Deir ez-Zor", 60),
    "hasakah": ("الحسكة", "Hasakah", 50),
    "daraa": ("درعا", "Daraa", 45),
    "as_suwayda": ("السويداء", "As-Suwayda", 25),
    "quneitra": ("القنيطرة", "Quneitra", 15),
}


def check(settings: Settings, governorate: str) -> str:
    """Return the governorate or raise ``unknown_governorate`` naming the allowed values."""
    if governorate not in settings.governorates:
        raise UnknownGovernorate({"governorate": governorate, "allowed": list(settings.governorates)})
    return governorate


def number(settings: Settings, governorate: str) -> int:
    """The governorate's number (1-based position in the list), the first two digits of a national ID."""
    return settings.governorates.index(check(settings, governorate)) + 1


def arabic_name(governorate: str) -> str:
    return SYRIA.get(governorate, (governorate, governorate, 0))[0]


def weight(governorate: str) -> int:
    return SYRIA.get(governorate, ("", "", 30))[2]
