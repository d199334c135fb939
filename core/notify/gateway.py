"""What the SMS and WeChat adapters share: posting a vendor's request to a configured gateway.

The platform does not hold vendor credentials in the dispatcher. Each adapter formats the vendor's own
request (Aliyun ``SendSms`` parameters, a WeChat subscribe message) and posts it as JSON, signed like a
webhook (:mod:`core.notify.signing`) and with the row's ``Idempotency-Key``, to a gateway URL set in the
settings: a relay that adds the credentials (AccessKey signature, access token) and forwards it, and
answers with the vendor's own response body. docs/notifications.md has the contract.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from core.clock import Clock
from core.notify.channel import DeliveryResult, Message
from core.notify.http import check_url, classify_response, json_body, post, signed_headers


def not_configured(channel: str, setting: str) -> DeliveryResult:
    return DeliveryResult.permanent(
        f"the {channel} channel has no gateway configured ({setting} is empty): nothing was sent"
    )


async def call_gateway(
    client: httpx.AsyncClient,
    *,
    url: str,
    document: Mapping[str, Any],
    message: Message,
    secret: str,
    clock: Clock,
) -> DeliveryResult | Mapping[str, Any]:
    """POST ``document`` to the gateway; the vendor's JSON answer on a 2xx, else the failure.
    A 2xx whose body is not a JSON object is retried: the vendor's verdict is unknown."""
    problem = check_url(url)
    if problem is not None:
        return DeliveryResult.permanent(f"gateway URL: {problem}")
    body = json_body(document)
    now = clock()
    headers = signed_headers(message, secret=secret, timestamp=int(now.timestamp()), body=body)
    response = await post(client, url, body, headers)
    if isinstance(response, DeliveryResult):
        return response
    if not response.is_success:
        return classify_response(response, now=now)
    try:
        answer = json.loads(response.content)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return DeliveryResult.retry(f"gateway answered HTTP {response.status_code} without a JSON object")
    return answer


def scalar_text(value: Any) -> str | None:
    """A payload value as template text: strings and numbers as they read, booleans ``true``/``false``;
    ``None`` for what a template cannot hold (null, lists, objects)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None
