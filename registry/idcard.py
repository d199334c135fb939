"""Resident identity numbers (公民身份号码) per GB 11643-1999.

Layout of the 18 characters: a 6-digit administrative region code (GB/T 2260), the birth date as
``YYYYMMDD``, a 3-digit sequence number (odd for men, even for women) and a check character computed
with ISO 7064 MOD 11-2 over the first 17 digits (``0``-``9`` or ``X`` for 10).

Pure functions: no I/O, and ``today`` is passed in so the "not in the future" rule is testable.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from core.errors import Invalid

ID_NUMBER_LENGTH = 18
_WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"  # indexed by (weighted sum mod 11)
_EARLIEST_BIRTH = dt.date(1900, 1, 1)

# Province-level codes of GB/T 2260 (first two digits of a region code); 71/81/82 are Taiwan,
# Hong Kong and Macao, which appear on residence permits issued on the same 18-character layout.
PROVINCE_CODES: frozenset[str] = frozenset(
    {
        "11", "12", "13", "14", "15",
        "21", "22", "23",
        "31", "32", "33", "34", "35", "36", "37",
        "41", "42", "43", "44", "45", "46",
        "50", "51", "52", "53", "54",
        "61", "62", "63", "64", "65",
        "71", "81", "82",
    }
)  # fmt: skip


class InvalidIdNumber(Invalid, ValueError):
    """An identity number that fails validation; ``code`` is stable for clients and translations."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


@dataclass(frozen=True, slots=True)
class IdNumber:
    """A validated identity number (normalised: upper-case ``X``)."""

    value: str
    region_code: str
    birth_on: dt.date
    sequence: str
    gender: Literal["M", "F"]

    @property
    def province_code(self) -> str:
        return self.region_code[:2]

    @property
    def masked(self) -> str:
        return mask_id_number(self.value)

    def __str__(self) -> str:
        return self.value


def check_char(first17: str) -> str:
    """The MOD 11-2 check character for 17 digits."""
    if len(first17) != ID_NUMBER_LENGTH - 1 or not first17.isascii() or not first17.isdigit():
        raise ValueError("check_char needs exactly 17 ASCII digits")
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def validate_id_number(value: str, *, today: dt.date) -> IdNumber:
    """Validate and normalise an identity number.

    Surrounding whitespace is ignored and a lower-case ``x`` is accepted. Raises
    :class:`InvalidIdNumber` with code ``id_number.length``, ``id_number.format``,
    ``id_number.region``, ``id_number.birth_date`` or ``id_number.check_digit``.
    """
    s = value.strip().upper()
    if len(s) != ID_NUMBER_LENGTH:
        raise InvalidIdNumber(
            "id_number.length", f"An ID number has {ID_NUMBER_LENGTH} characters; got {len(s)}."
        )
    body, last = s[:17], s[17]
    if not (body.isascii() and body.isdigit()) or not (last == "X" or (last.isascii() and last.isdigit())):
        raise InvalidIdNumber(
            "id_number.format",
            "An ID number is 17 digits followed by a digit or the letter X.",
        )
    region = body[:6]
    if region[:2] not in PROVINCE_CODES or region[2:] == "0000":
        raise InvalidIdNumber(
            "id_number.region", f"The region code {region} is not a county-level division code."
        )
    try:
        birth_on = dt.date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        raise InvalidIdNumber(
            "id_number.birth_date", f"The birth date {body[6:14]} is not a real date."
        ) from None
    if birth_on < _EARLIEST_BIRTH or birth_on > today:
        raise InvalidIdNumber(
            "id_number.birth_date",
            f"The birth date {birth_on.isoformat()} must be between 1900-01-01 and {today.isoformat()}.",
        )
    expected = check_char(body)
    if last != expected:
        raise InvalidIdNumber(
            "id_number.check_digit",
            "The check character does not match the other 17 digits; please re-check the number.",
        )
    sequence = body[14:17]
    return IdNumber(
        value=s,
        region_code=region,
        birth_on=birth_on,
        sequence=sequence,
        gender="M" if int(sequence[2]) % 2 == 1 else "F",
    )


def is_valid_id_number(value: str, *, today: dt.date) -> bool:
    try:
        validate_id_number(value, today=today)
    except InvalidIdNumber:
        return False
    return True


def mask_id_number(value: str) -> str:
    """Show the region code and the sequence number only: ``420902********123*``.

    The birth date and the check character are hidden. The check character is computed from the
    birth date (MOD 11-2), so showing it next to an age would narrow the birth date to about one day
    in eleven of that year; the region and sequence say nothing about it. A value that is not 18
    characters long is hidden entirely.
    """
    s = value.strip().upper()
    if len(s) != ID_NUMBER_LENGTH:
        return "*" * len(s)
    return s[:6] + "*" * 8 + s[14:17] + "*"


def age_on(birth_on: dt.date, today: dt.date) -> int:
    """Age in whole years on ``today`` (someone born on 29 February turns a year older on 1 March)."""
    return today.year - birth_on.year - ((today.month, today.day) < (birth_on.month, birth_on.day))


def make_id_number(region: str, birth_on: dt.date, seq3: int) -> str:
    """Build a well-formed identity number; the gender follows the parity of ``seq3`` (odd = male)."""
    if len(region) != 6 or not region.isdigit():
        raise ValueError("region must be a 6-digit code")
    if not 0 <= seq3 <= 999:
        raise ValueError("seq3 must be in 0..999")
    body = f"{region}{birth_on:%Y%m%d}{seq3:03d}"
    return body + check_char(body)
