"""The idempotency digest of a redemption: stored in every journal row, so it must never change."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from quota.redemption import Redemption, payload_hash

codes = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1, max_size=32)


@given(codes, codes, st.integers(min_value=1, max_value=10**12), codes)
def test_a_redemptions_digest_is_the_generic_one(card: str, product: str, qty: int, point: str) -> None:
    r = Redemption("e", card, product, qty, point)
    assert r.payload_hash == payload_hash("redeem", card=card, product=product, qty=qty, point=point)


def test_the_digest_of_a_known_payload_is_unchanged() -> None:
    # a journal written before an upgrade must still recognise its retries
    r = Redemption("e", "SD110000000001", "sugar", 1000, "P1")
    assert r.payload_hash == "924dfad8f639c951080aa0829f323321f108a9683fdeffbbe23758a43d3bf203"
    assert r.payload_hash != Redemption("e", "SD110000000001", "sugar", 1001, "P1").payload_hash
