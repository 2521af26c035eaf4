"""Imports every mapped module so ``Base.metadata`` is complete (alembic autogenerate, tests)."""

from card_backend.auth import models as auth_models
from card_backend.card import models as card_models
from card_backend.cardauth import models as cardauth_models
from card_backend.db import Base
from card_backend.family import models as family_models
from card_backend.licence import models as licence_models
from card_backend.point import models as point_models
from card_backend.vehicle import models as vehicle_models
from quota import models as quota_models

__all__ = [
    "Base",
    "auth_models",
    "card_models",
    "cardauth_models",
    "family_models",
    "licence_models",
    "point_models",
    "quota_models",
    "vehicle_models",
]
