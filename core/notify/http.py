"""Posting a signed JSON request, and what an HTTP answer means for a delivery (the rules are pure).

Every channel sends one ``POST`` with a JSON body, the :mod:`~core.notify.signing` header, the row's
``Idempotency-Key`` and a timeout. The answer, for a receiver that speaks plain HTTP (the webhook):

* 2xx: sent;
* 408 (request timeout) and 429 (too many requests): try again later (honouring ``Retry-After``);
* any other 4xx: permanent — the receiver refuses this request and would refuse it again;
* 5xx, a timeout, a refused or broken connection: try again later;
* anything else (1xx, a 3xx redirect, which is not followed): permanent — a misconfigured URL.

The vendor adapters read their gateway's body on a 2xx as well (a vendor says "refused" with 200).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from core.notify.channel import DeliveryResult, Message
from core.notify.signing import SIGNATURE_HEADER, signature_header

USER_AGENT: Final = "eldercare-notify/1"
# What the receiver's error body may add to ``last_error`` (characters).
ERROR_BODY_CHARS: Final = 200


def json_body(document: Mapping[str, Any]) -> bytes:
    """The canonical JSON bytes sent: UTF-8 (Chinese as is), keys sorted, no spaces."""
    return json.dumps(
        document, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str
    ).encode()


def check_url(url: str) -> str | None:
    """Why ``url`` cannot be posted to (``None`` when it can): an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"not a URL: {url!r}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"not an http(s) URL: {url!r}"
    return None


def parse_retry_after(value: str | None, *, now: dt.datetime) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; ``None`` when absent or malformed."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def classify_status(status: int, *, retry_after_s: float | None = None, body: str = "") -> DeliveryResult:
    """What an HTTP status means for the delivery (the module docstring's table)."""
    if 200 <= status < 300:
        return DeliveryResult.sent(status=status)
    detail = f"HTTP {status}" + (f": {body[:ERROR_BODY_CHARS]}" if body else "")
    if status in (408, 429) or 500 <= status < 600:
        return DeliveryResult.retry(detail, status=status, retry_after_s=retry_after_s)
    if 300 <= status < 400:
        return DeliveryResult.permanent(f"{detail} (redirects are not followed: fix the URL)", status=status)
    return DeliveryResult.permanent(detail, status=status)


def signed_headers(message: Message, *, secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of every request: JSON, the signature, the idempotency key, kind and attempt."""
    return {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signature_header(secret, timestamp, body),
        "Idempotency-Key": message.idempotency_key,
        "X-Eldercare-Kind": message.kind,
        "X-Eldercare-Attempt": str(message.attempt),
    }


async def post(
    client: httpx.AsyncClient, url: str, body: bytes, headers: Mapping[str, str]
) -> httpx.Response | DeliveryResult:
    """POST ``body``; the response, or the failure as a result when none came (a timeout or a
    connection error is retryable; a URL httpx cannot use is permanent)."""
    try:
        return await client.post(url, content=body, headers=dict(headers))
    except httpx.TimeoutException as exc:
        return DeliveryResult.retry(f"timeout ({type(exc).__name__})")
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        return DeliveryResult.permanent(f"unusable URL: {exc}")
    except httpx.TransportError as exc:  # refused, reset, DNS, TLS: the receiver may come back
        return DeliveryResult.retry(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def classify_response(response: httpx.Response, *, now: dt.datetime) -> DeliveryResult:
    """:func:`classify_status` of a response, with its ``Retry-After`` and the start of its body."""
    text = "" if response.is_success else response.text
    return classify_status(
        response.status_code,
        retry_after_s=parse_retry_after(response.headers.get("Retry-After"), now=now),
        body=text,
    )
