from __future__ import annotations

import pytest

from core.phone import InvalidPhone, is_valid_phone, mask_phone, normalise_phone

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("13812345678", "13812345678"),
        ("138 1234 5678", "13812345678"),
        ("138-1234-5678", "13812345678"),
        ("+86 138 1234 5678", "13812345678"),
        ("+8613812345678", "13812345678"),
        ("8613812345678", "13812345678"),
        ("0086 13812345678", "13812345678"),
        ("(+86) 199-0000-1111", "19900001111"),
        (" 15900000000 ", "15900000000"),
        ("16612345678", "16612345678"),
    ],
)
def test_valid(value: str, normalised: str) -> None:
    assert normalise_phone(value) == normalised
    assert is_valid_phone(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1381234567",  # 10 digits
        "138123456789",  # 12 digits
        "12812345678",  # second digit 2
        "10812345678",
        "23812345678",  # not starting with 1
        "0712-2345678",  # a Xiaogan landline
        "+1 138 1234 5678",
        "86 1381234567",  # prefix plus only 10 digits
        "138l2345678",  # letter l instead of 1
        "１３８１２３４５６７８",  # full-width digits
        "138.1234.5678",
    ],
)
def test_invalid(value: str) -> None:
    with pytest.raises(InvalidPhone) as info:
        normalise_phone(value)
    assert info.value.code == "phone.format"
    assert isinstance(info.value, ValueError)
    assert not is_valid_phone(value)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("13812341234", "138****1234"),
        ("+86 138-1234-1234", "138****1234"),
        ("123", "***"),
    ],
)
def test_mask(value: str, masked: str) -> None:
    assert mask_phone(value) == masked
