"""Distribution points for the synthetic population: each kind in every governorate, serving its products."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from card_backend import governorates as govs
from card_backend.config import Settings
from card_backend.point.schemas import KIND_PRODUCTS, PointKind

POINTS_PER_KIND = {
    PointKind.FUEL_STATION: 2,
    PointKind.GAS_DEPOT: 1,
    PointKind.STATE_OUTLET: 1,
    PointKind.BAKERY: 2,
}
POINT_NAMES = {
    PointKind.FUEL_STATION: ("محطة وقود", "fuel station", "FS"),
    PointKind.GAS_DEPOT: ("مركز توزيع الغاز", "gas depot", "GD"),
    PointKind.STATE_OUTLET: ("صالة السورية للتجارة", "state outlet", "SO"),
    PointKind.BAKERY: ("مخبز", "bakery", "BK"),
}


def point_rows(settings: Settings, existing: set[str], next_id: Callable[[], int]) -> list[dict[str, Any]]:
    """Rows for the points of each kind in every governorate whose code is not taken yet."""
    rows = []
    for gov_no, gov in enumerate(settings.governorates, start=1):
        for kind, count in POINTS_PER_KIND.items():
            name_ar, name_en, prefix = POINT_NAMES[kind]
            for n in range(1, count + 1):
                code = f"{prefix}-{gov_no:02d}-{n:03d}"
                if code not in existing:
                    rows.append(
                        {
                            "id": next_id(),
                            "code": code,
                            "name_ar": f"{name_ar} {govs.arabic_name(gov)} {n}",
                            "name_en": f"{gov} {name_en} {n}",
                            "kind": kind.value,
                            "governorate": gov,
                            "products": list(KIND_PRODUCTS[kind]),
                            "active": True,
                        }
                    )
    return rows
