from __future__ import annotations

import datetime as dt
import random

import pytest

from registry.idcard import (
    InvalidIdNumber,
    age_on,
    check_char,
    is_valid_id_number,
    make_id_number,
    mask_id_number,
    validate_id_number,
)

pytestmark = pytest.mark.unit

TODAY = dt.date(2026, 11, 20)


def _with_check(first17: str) -> str:
    return first17 + check_char(first17)


@pytest.mark.parametrize(
    ("value", "birth_on", "gender", "region"),
    [
        # The worked example printed in GB 11643-1999.
        ("11010519491231002X", dt.date(1949, 12, 31), "F", "110105"),
        ("11010519491231002x", dt.date(1949, 12, 31), "F", "110105"),
        ("  11010519491231002X ", dt.date(1949, 12, 31), "F", "110105"),
        (_with_check("42090219500301123"), dt.date(1950, 3, 1), "M", "420902"),
        (_with_check("42098419280229004"), dt.date(1928, 2, 29), "F", "420984"),
        (_with_check("42092220261120001"), TODAY, "M", "420922"),
        (_with_check("42092219000101009"), dt.date(1900, 1, 1), "M", "420922"),
    ],
)
def test_valid_numbers(value: str, birth_on: dt.date, gender: str, region: str) -> None:
    n = validate_id_number(value, today=TODAY)
    assert n.birth_on == birth_on
    assert n.gender == gender
    assert n.region_code == region
    assert n.province_code == region[:2]
    assert n.value == value.strip().upper()
    assert len(n.value) == 18


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", "id_number.length"),
        ("4209021950030112", "id_number.length"),
        ("4209021950030112355", "id_number.length"),
        ("420902195003011", "id_number.length"),  # the retired 15-digit form is not accepted
        ("42090219500301123Y", "id_number.format"),
        ("4209021950030112A5", "id_number.format"),
        ("４２０９０２１９５００３０１１２３５", "id_number.format"),  # full-width digits
        (_with_check("99090219500301123"), "id_number.region"),
        (_with_check("00090219500301123"), "id_number.region"),
        (_with_check("42000019500301123"), "id_number.region"),
        (_with_check("42090219500230123"), "id_number.birth_date"),  # 30 February
        (_with_check("42090219510229123"), "id_number.birth_date"),  # 1951 is not a leap year
        (_with_check("42090219501301123"), "id_number.birth_date"),  # month 13
        (_with_check("42090219500300123"), "id_number.birth_date"),  # day 0
        (_with_check("42090220261121123"), "id_number.birth_date"),  # tomorrow
        ("440524188001010014", "id_number.birth_date"),  # GB 11643's 1880 example: before 1900
        ("11010519491231002Y", "id_number.format"),
        ("110105194912310021", "id_number.check_digit"),
        ("110105194912310020", "id_number.check_digit"),
    ],
)
def test_invalid_numbers(value: str, code: str) -> None:
    with pytest.raises(InvalidIdNumber) as info:
        validate_id_number(value, today=TODAY)
    assert info.value.code == code
    assert isinstance(info.value, ValueError)
    assert str(info.value)  # a human-readable message
    assert not is_valid_id_number(value, today=TODAY)


def test_single_digit_typos_are_caught_by_the_check_character() -> None:
    good = make_id_number("420902", dt.date(1948, 7, 15), 57)
    for pos in range(17):
        for d in "0123456789":
            if d == good[pos]:
                continue
            typo = good[:pos] + d + good[pos + 1 :]
            assert not is_valid_id_number(typo, today=TODAY), typo


def test_make_id_number_round_trips() -> None:
    rng = random.Random(7)
    for _ in range(500):
        birth = dt.date(1920, 1, 1) + dt.timedelta(days=rng.randrange(30000))
        seq = rng.randrange(1000)
        region = rng.choice(["420902", "420984", "420981", "420982", "420923", "420921", "420922"])
        n = validate_id_number(make_id_number(region, birth, seq), today=TODAY)
        assert (n.region_code, n.birth_on, n.sequence) == (region, birth, f"{seq:03d}")
        assert n.gender == ("M" if seq % 2 else "F")


@pytest.mark.parametrize(
    ("region", "seq"), [("42090", 1), ("4209021", 1), ("42090a", 1), ("420902", -1), ("420902", 1000)]
)
def test_make_id_number_rejects_bad_parts(region: str, seq: int) -> None:
    with pytest.raises(ValueError, match="must"):
        make_id_number(region, dt.date(1950, 1, 1), seq)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        # Region and sequence shown; birth date and check character hidden.
        ("420902195003011235", "420902********123*"),
        ("11010519491231002x", "110105********002*"),
        ("short", "*****"),
        ("4209021950030112", "****************"),
    ],
)
def test_mask(value: str, masked: str) -> None:
    assert mask_id_number(value) == masked


def test_the_mask_carries_nothing_of_the_birth_date() -> None:
    """Numbers that differ only in the birth date mask alike: the check character, a function of
    the birth date, is not shown, so a masked number plus an age cannot be narrowed to a birth day."""
    for region, seq in (("420902", 123), ("110105", 2), ("420921", 999)):
        masks = {
            mask_id_number(make_id_number(region, dt.date(1940, 1, 1) + dt.timedelta(days=d), seq))
            for d in range(366)
        }
        assert len(masks) == 1, masks


@pytest.mark.parametrize(
    ("birth_on", "today", "age"),
    [
        (dt.date(1950, 3, 1), dt.date(2026, 2, 28), 75),
        (dt.date(1950, 3, 1), dt.date(2026, 3, 1), 76),
        (dt.date(1948, 2, 29), dt.date(2026, 2, 28), 77),
        (dt.date(1948, 2, 29), dt.date(2026, 3, 1), 78),
        (dt.date(2026, 11, 20), dt.date(2026, 11, 20), 0),
    ],
)
def test_age_on(birth_on: dt.date, today: dt.date, age: int) -> None:
    assert age_on(birth_on, today) == age
