"""The WeChat adapter: a mini-program subscribe message (订阅消息, ``subscribeMessage.send``), posted
to a configured gateway that holds the access token.

Request (JSON, signed, ``Idempotency-Key``; :mod:`core.notify.gateway`)::

    {"touser": "<openid>", "template_id": "<template id>", "page": "pages/alarm/detail?id=123",
     "data": {"thing1": {"value": "王秀英"}, "phrase2": {"value": "SOS"}, "time3": {"value": "…"}},
     "miniprogram_state": "formal", "lang": "zh_CN"}

* ``touser``: the row's recipient, the family member's openid for the mini-program.
* ``template_id``, ``page`` and ``data``: from the template configured for the row's ``kind``
  (``ELDERCARE_NOTIFY_WECHAT_TEMPLATES``, JSON)::

      {"alarm.escalated": {"template_id": "…", "page": "pages/alarm/detail?id={alarm_id}",
                           "data": {"thing1": "elder_name", "phrase2": "type", "time3": "raised_at"}}}

  Each template key takes the named payload field (``page`` may interpolate them as ``{field}``); a
  value is cut to the length WeChat allows for its key's type (``thing`` 20 characters, ``phrase`` 5,
  …). A kind without a template, or a payload without a field its template needs, fails permanently.

Answer: ``{"errcode": 0, "errmsg": "ok"}`` is sent; a busy system, an expired access token (the gateway
refreshes it) and rate limits are retried (:data:`RETRYABLE_ERRCODES`); any other code (an invalid
openid, a user who did not subscribe — 43101 — a bad template or argument) is permanent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from core.clock import Clock, utc_now
from core.notify.channel import DeliveryResult, Message
from core.notify.gateway import call_gateway, not_configured, scalar_text

# -1 system busy; 40001, 40014, 42001 access token invalid or expired; 45009 daily and 45011 per-minute
# API limits.
RETRYABLE_ERRCODES: Final = frozenset({-1, 40001, 40014, 42001, 45009, 45011})

# The longest value WeChat accepts for a data key's type (its name without the number).
VALUE_LIMITS: Final[Mapping[str, int]] = {
    "thing": 20,
    "name": 10,
    "phrase": 5,
    "character_string": 32,
    "number": 32,
    "letter": 32,
    "symbol": 5,
    "car_number": 8,
    "phone_number": 17,
    "amount": 32,
    "time": 32,
    "date": 32,
}
_OPENID = re.compile(r"[A-Za-z0-9_-]{6,64}")
_KEY_TYPE = re.compile(r"([a-z_]+?)\d+")
_FIELD = re.compile(r"\{([A-Za-z0-9_]+)\}")


@dataclass(frozen=True, slots=True)
class WeChatTemplate:
    template_id: str
    data: Mapping[str, str]  # WeChat data key -> payload field
    page: str = ""


@dataclass(frozen=True, slots=True)
class WeChatConfig:
    gateway_url: str = ""
    templates: Mapping[str, WeChatTemplate] = field(default_factory=dict)
    miniprogram_state: str = "formal"

    @classmethod
    def parse(cls, *, gateway_url: str, templates_json: str) -> WeChatConfig:
        """From the settings; malformed templates are an error at start, not at the first message."""
        raw = json.loads(templates_json or "{}")
        if not isinstance(raw, dict):
            raise ValueError("WeChat templates must be a JSON object of kind -> template")
        templates: dict[str, WeChatTemplate] = {}
        for kind, t in raw.items():
            data = t.get("data") if isinstance(t, dict) else None
            if (
                not isinstance(t, dict)
                or not isinstance(t.get("template_id"), str)
                or not isinstance(data, dict)
                or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())
                or not isinstance(t.get("page", ""), str)
            ):
                raise ValueError(
                    f"WeChat template for {kind!r}: need template_id, data {{key: field}}, page?"
                )
            templates[kind] = WeChatTemplate(t["template_id"], data, t.get("page", ""))
        return cls(gateway_url=gateway_url, templates=templates)


def _cut(key: str, value: str) -> str:
    match = _KEY_TYPE.fullmatch(key)
    limit = VALUE_LIMITS.get(match.group(1)) if match else None
    return value if limit is None else value[:limit]


def wechat_request(message: Message, config: WeChatConfig) -> dict[str, Any] | DeliveryResult:
    """The subscribe message for ``message``, or why there can be none (a permanent failure)."""
    if _OPENID.fullmatch(message.recipient) is None:
        return DeliveryResult.permanent(f"not a WeChat openid: {message.recipient!r}")
    template = config.templates.get(message.kind)
    if template is None:
        return DeliveryResult.permanent(f"no WeChat template for kind {message.kind!r}")
    data: dict[str, dict[str, str]] = {}
    for key, name in template.data.items():
        text = scalar_text(message.payload.get(name))
        if text is None or not text:
            return DeliveryResult.permanent(f"payload has no {name!r} for WeChat template key {key!r}")
        data[key] = {"value": _cut(key, text)}
    page_fields = {n: scalar_text(message.payload.get(n)) for n in _FIELD.findall(template.page)}
    if any(v is None for v in page_fields.values()):
        return DeliveryResult.permanent(f"payload lacks a field of the WeChat page {template.page!r}")
    page = _FIELD.sub(lambda m: page_fields[m.group(1)] or "", template.page)
    request: dict[str, Any] = {
        "touser": message.recipient,
        "template_id": template.template_id,
        "data": data,
        "miniprogram_state": config.miniprogram_state,
        "lang": "zh_CN",
    }
    if page:
        request["page"] = page
    return request


def wechat_result(answer: Mapping[str, Any]) -> DeliveryResult:
    """The vendor's verdict in its answer body."""
    code = answer.get("errcode")
    if code == 0:
        return DeliveryResult.sent()
    if not isinstance(code, int) or isinstance(code, bool):
        return DeliveryResult.retry(f"WeChat gateway answered without an errcode: {json.dumps(answer)[:200]}")
    detail = f"WeChat {code}: {answer.get('errmsg', '')}".strip()
    return DeliveryResult.retry(detail) if code in RETRYABLE_ERRCODES else DeliveryResult.permanent(detail)


class WeChatChannel:
    name = "wechat"

    def __init__(
        self, client: httpx.AsyncClient, config: WeChatConfig, *, secret: str, clock: Clock = utc_now
    ) -> None:
        self._client, self._config, self._secret, self._clock = client, config, secret, clock

    async def send(self, message: Message) -> DeliveryResult:
        if not self._config.gateway_url:
            return not_configured("WeChat", "ELDERCARE_NOTIFY_WECHAT_GATEWAY_URL")
        request = wechat_request(message, self._config)
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
        return answer if isinstance(answer, DeliveryResult) else wechat_result(answer)
