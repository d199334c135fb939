from __future__ import annotations

import pytest

from core.identity.passwords import hash_password, needs_rehash, verify_password

pytestmark = pytest.mark.unit


def test_hash_and_verify() -> None:
    h = hash_password("Eldercare-demo-2026")
    assert h.startswith("$argon2id$")
    assert "Eldercare-demo-2026" not in h
    assert verify_password(h, "Eldercare-demo-2026")
    assert not verify_password(h, "eldercare-demo-2026")
    assert not verify_password(h, "")
    assert not needs_rehash(h)


def test_salted() -> None:
    assert hash_password("same") != hash_password("same")


@pytest.mark.parametrize("bad_hash", ["", "plain-text", "$argon2id$v=19$m=1,t=1,p=1$broken"])
def test_malformed_hash_never_verifies(bad_hash: str) -> None:
    assert not verify_password(bad_hash, "plain-text")
    assert needs_rehash(bad_hash)
