"""The SMS adapter: an Aliyun ``SendSms``-style request, posted to a configured SMS gateway.

Request (JSON, signed, ``Idempotency-Key``; :mod:`core.notify.gateway`)::

    {"PhoneNumbers": "13812345678", "SignName": "孝感智慧养老", "TemplateCode": "SMS_300000001",
     "TemplateParam": "{\"elder_name\":\"王秀英\",\"type\":\"SOS\"}", "OutId": "<idempotency key>"}

* ``PhoneNumbers``: the row's recipient, a mainland mobile number normalised to 11 digits
  (``core.phone``); anything else fails permanently.
* ``TemplateCode``: the vendor template registered for the row's ``kind``
  (``ELDERCARE_NOTIFY_SMS_TEMPLATES``, a JSON object ``{"alarm.escalated": "SMS_300000001"}``); a kind
  without one fails permanently — an SMS is never sent with text the vendor has not approved.
* ``TemplateParam``: a JSON string of the payload's scalar fields, every value a string (the vendor
  refuses numbers there); nested values are left out.
* ``OutId``: the idempotency key, which the vendor echoes in its delivery receipts.

Answer: the vendor's body, ``{"Code": "OK", "Message": "OK", "BizId": "…", "RequestId": "…"}``. ``OK`` is
sent; throttling, balance and system errors are retried (:data:`RETRYABLE_CODES`); any other code
(a bad number, template, signature or parameter) is permanent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from core.clock import Clock, utc_now
from core.notify.channel import DeliveryResult, Message
from core.notify.gateway import call_gateway, not_configured, scalar_text
from core.phone import InvalidPhone, normalise_phone

# Vendor codes that may succeed later: system errors, flow control, an account that is short of
# balance (topped up, it sends again). Every other code but OK is the request's own fault.
RETRYABLE_CODES: Final = frozenset(
    {
        "isp.SYSTEM_ERROR",
        "isp.GATEWAY_ERROR",
        "isp.UNKNOWN",
        "isv.BUSINESS_LIMIT_CONTROL",
        "BUSINESS_LIMIT_CONTROL_MINUTE",
        "isv.BUSINESS_LIMIT_HOUR",
        "isv.BUSINESS_LIMIT_DAY",
        "isv.AMOUNT_NOT_ENOUGH",
        "isv.OUT_OF_SERVICE",
        "Throttling",
        "Throttling.User",
    }
)


@dataclass(frozen=True, slots=True)
class SmsConfig:
    gateway_url: str = ""
    sign_name: str = ""
    templates: Mapping[str, str] = field(default_factory=dict)  # kind -> vendor TemplateCode

    @classmethod
    def parse(cls, *, gateway_url: str, sign_name: str, templates_json: str) -> SmsConfig:
        """From the settings; malformed templates are an error at start, not at the first SMS."""
        templates = json.loads(templates_json or "{}")
        if not isinstance(templates, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in templates.items()
        ):
            raise ValueError(
                'SMS templates must be a JSON object of kind -> template code, e.g. {"alarm.raised": "SMS_1"}'
            )
        return cls(gateway_url=gateway_url, sign_name=sign_name, templates=templates)


def sms_request(message: Message, config: SmsConfig) -> dict[str, Any] | DeliveryResult:
    """The vendor request for ``message``, or why there can be none (a permanent failure)."""
    try:
        phone = normalise_phone(message.recipient)
    except InvalidPhone:
        return DeliveryResult.permanent(f"not a mainland mobile number: {message.recipient!r}")
    template = config.templates.get(message.kind)
    if template is None:
        return DeliveryResult.permanent(f"no SMS template for kind {message.kind!r}")
    if not config.sign_name:
        return DeliveryResult.permanent("no SMS signature configured (ELDERCARE_NOTIFY_SMS_SIGN_NAME)")
    params = {k: t for k, v in message.payload.items() if (t := scalar_text(v)) is not None}
    return {
        "PhoneNumbers": phone,
        "SignName": config.sign_name,
        "TemplateCode": template,
        "TemplateParam": json.dumps(params, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
        "OutId": message.idempotency_key,
    }


def sms_result(answer: Mapping[str, Any]) -> DeliveryResult:
    """The vendor's verdict in its answer body."""
    code = answer.get("Code")
    if code == "OK":
        return DeliveryResult.sent()
    detail = f"SMS {code}: {answer.get('Message', '')}".strip()
    if not isinstance(code, str):
        return DeliveryResult.retry(f"SMS gateway answered without a Code: {json.dumps(answer)[:200]}")
    if code in RETRYABLE_CODES:
        return DeliveryResult.retry(detail)
    return DeliveryResult.permanent(detail)


class SmsChannel:
    name = "sms"

    def __init__(
        self, client: httpx.AsyncClient, config: SmsConfig, *, secret: str, clock: Clock = utc_now
    ) -> None:
        self._client, self._config, self._secret, self._clock = client, config, secret, clock

    async def send(self, message: Message) -> DeliveryResult:
        if not self._config.gateway_url:
            return not_configured("SMS", "ELDERCARE_NOTIFY_SMS_GATEWAY_URL")
        request = sms_request(message, self._config)
        if isinstance(request, DeliveryResult):
            return request
        answer = await call_gateway(
            self._client,
            url=self._config.gateway_url,
            document=request,
            message=message,
            secret=self._secret,
            clock=self._clock,
        )
        return answer if isinstance(answer, DeliveryResult) else sms_result(answer)
