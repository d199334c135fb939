"""The signature on every request the dispatcher sends, and its check for receivers (pure).

The scheme is Stripe's (and Slack's): an HMAC-SHA256, keyed with the shared secret, over the Unix
timestamp in seconds, a full stop and the raw request body::

    X-Eldercare-Signature: t=1764736800,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

A receiver recomputes ``v1`` from the timestamp and the bytes it received (before parsing the JSON),
compares in constant time, and refuses a timestamp older than a few minutes (a replayed request).
Several ``v1=`` entries may appear while a secret is being rotated: any one matching is enough.
docs/notifications.md has the same check in a dozen lines for receivers in other code bases.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

SIGNATURE_HEADER: Final = "X-Eldercare-Signature"
SCHEME: Final = "v1"
# How far a signed timestamp may be from the receiver's clock (seconds), either way.
DEFAULT_TOLERANCE_S: Final = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``b"<timestamp>." + body`` under ``secret``."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secrets: str | list[str], timestamp: int, body: bytes) -> str:
    """The header value ``t=<timestamp>,v1=<hex>`` (one ``v1`` per secret, during a rotation)."""
    keys = [secrets] if isinstance(secrets, str) else secrets
    return ",".join([f"t={timestamp}", *(f"{SCHEME}={signature(k, timestamp, body)}" for k in keys)])


class SignatureInvalid(ValueError):
    """The request is not signed with the secret, or the header is malformed, or too old."""


def verify(
    secret: str, header: str | None, body: bytes, *, now_s: int, tolerance_s: int = DEFAULT_TOLERANCE_S
) -> int:
    """Check a received request; returns its signed timestamp. Raises :class:`SignatureInvalid`."""
    if not header:
        raise SignatureInvalid("no signature header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureInvalid("malformed signature header")
        if name == "t":
            if not value.isdigit():
                raise SignatureInvalid("malformed timestamp")
            timestamp = int(value)
        elif name == SCHEME:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureInvalid("signature header lacks t= or v1=")
    if abs(now_s - timestamp) > tolerance_s:
        raise SignatureInvalid("timestamp outside the tolerance")
    expected = signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureInvalid("signature does not match")
    return timestamp
