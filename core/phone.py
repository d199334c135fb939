"""Mainland China mobile numbers: validation, normalisation to 11 digits, masking. Pure functions."""

from __future__ import annotations

import re

from core.errors import Invalid

_SEPARATORS = re.compile(r"[\s\-()]+")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")


class InvalidPhone(Invalid, ValueError):
    """A phone number that is not a mainland mobile number; ``code`` is stable for clients."""

    def __init__(self, message: str, code: str = "phone.format") -> None:
        super().__init__(message, code=code)


def normalise_phone(value: str) -> str:
    """Return the 11-digit number for input such as ``+86 138-1234-5678``, ``0086 13812345678``.

    Spaces, hyphens and parentheses are ignored; an optional ``+86``, ``0086`` or ``86`` prefix is
    removed. Raises :class:`InvalidPhone` (code ``phone.format``) for anything else.
    """
    s = _SEPARATORS.sub("", value)
    if s.startswith("+86"):
        s = s[3:]
    elif s.startswith("0086"):
        s = s[4:]
    elif s.startswith("86") and len(s) == 13:
        s = s[2:]
    if not s.isascii() or _MOBILE.fullmatch(s) is None:
        raise InvalidPhone(
            "A mobile number has 11 digits and starts with 13-19, e.g. 13812345678 (optionally +86)."
        )
    return s


def is_valid_phone(value: str) -> bool:
    try:
        normalise_phone(value)
    except InvalidPhone:
        return False
    return True


def mask_phone(value: str) -> str:
    """Hide the middle four digits: ``138****1234``. Input is normalised first when possible."""
    try:
        s = normalise_phone(value)
    except InvalidPhone:
        s = _SEPARATORS.sub("", value)
    if len(s) < 8:
        return "*" * len(s)
    return s[:3] + "*" * (len(s) - 7) + s[-4:]
