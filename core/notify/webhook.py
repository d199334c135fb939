"""The webhook channel, the working default: ``POST`` the notification as JSON to the recipient URL.

The body (the same bytes on every attempt)::

    {"created_at": "2026-12-03T09:30:00+00:00", "data": {…the outbox row's payload…},
     "idempotency_key": "alarm:123:escalated:1", "kind": "alarm.escalated", "ref": "alarm:123"}

with ``X-Eldercare-Signature: t=…,v1=…`` (:mod:`core.notify.signing`), ``Idempotency-Key`` (the row's
key: a receiver that acts once per key acts once however often it is delivered), ``X-Eldercare-Kind``
and ``X-Eldercare-Attempt``. The answer's meaning is :mod:`core.notify.http`'s table.
"""

from __future__ import annotations

from typing import Any

import httpx

from core.clock import Clock, utc_now
from core.notify.channel import DeliveryResult, Message
from core.notify.http import check_url, classify_response, json_body, post, signed_headers


def webhook_document(message: Message) -> dict[str, Any]:
    """What a webhook receiver gets, as a JSON document."""
    return {
        "idempotency_key": message.idempotency_key,
        "kind": message.kind,
        "ref": message.ref,
        "created_at": message.created_at.isoformat(),
        "data": dict(message.payload),
    }


class WebhookChannel:
    name = "webhook"

    def __init__(self, client: httpx.AsyncClient, *, secret: str, clock: Clock = utc_now) -> None:
        if not secret:
            raise ValueError("the webhook channel needs a signing secret (notify_webhook_secret)")
        self._client, self._secret, self._clock = client, secret, clock

    async def send(self, message: Message) -> DeliveryResult:
        problem = check_url(message.recipient)
        if problem is not None:
            return DeliveryResult.permanent(problem)
        body = json_body(webhook_document(message))
        now = self._clock()
        headers = signed_headers(message, secret=self._secret, timestamp=int(now.timestamp()), body=body)
        response = await post(self._client, message.recipient, body, headers)
        if isinstance(response, DeliveryResult):
            return response
        return classify_response(response, now=now)
