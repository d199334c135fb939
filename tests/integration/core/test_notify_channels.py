"""The notification channels against real HTTP servers on loopback (tests.support.http_receiver): the
webhook's signature, headers and body as a receiver sees them, what each kind of failure becomes, and
the SMS and WeChat adapters' requests as their gateway receives them."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from core.notify.channel import Message, Outcome
from core.notify.runner import build_channels, http_client
from core.notify.signing import SIGNATURE_HEADER, verify
from core.notify.sms import SmsChannel, SmsConfig
from core.notify.webhook import WebhookChannel
from core.notify.wechat import WeChatChannel, WeChatConfig
from core.settings import Settings
from demo.net import free_port
from tests.support.http_receiver import Answer, Receiver

pytestmark = pytest.mark.integration

SECRET = "whsec-channels-test"
CREATED = dt.datetime(2026, 12, 3, 1, 30, tzinfo=dt.UTC)
PAYLOAD = {"alarm_id": 123, "elder_name": "王秀英", "type": "SOS", "raised_at": "2026-12-03 09:30"}


def _message(recipient: str, channel: str = "webhook", attempt: int = 1) -> Message:
    return Message(
        id=7,
        channel=channel,
        recipient=recipient,
        kind="alarm.escalated",
        ref="alarm:123",
        payload=PAYLOAD,
        idempotency_key="alarm:123:escalated:1",
        created_at=CREATED,
        attempt=attempt,
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver(SECRET).start()
    yield r
    await r.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(Settings(notify_timeout_s=1.0)) as c:
        yield c


async def test_a_webhook_is_signed_keyed_and_verifiable_by_its_receiver(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    result = await WebhookChannel(client, secret=SECRET).send(_message(receiver.url(), attempt=2))
    assert (result.outcome, result.status) == (Outcome.SENT, 200)
    (delivery,) = receiver.deliveries
    assert delivery.signed
    verify(SECRET, delivery.headers[SIGNATURE_HEADER.lower()], delivery.body, now_s=int(time.time()))
    assert delivery.headers["idempotency-key"] == "alarm:123:escalated:1"
    assert delivery.headers["x-eldercare-kind"] == "alarm.escalated"
    assert delivery.headers["x-eldercare-attempt"] == "2"
    assert delivery.headers["content-type"] == "application/json; charset=utf-8"
    assert delivery.json() == {
        "idempotency_key": "alarm:123:escalated:1",
        "kind": "alarm.escalated",
        "ref": "alarm:123",
        "created_at": "2026-12-03T01:30:00+00:00",
        "data": PAYLOAD,
    }
    assert receiver.effects == {"alarm:123:escalated:1": delivery.json()}


async def test_a_webhook_signed_with_another_secret_is_refused_by_the_receiver(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    result = await WebhookChannel(client, secret="not-the-receivers").send(_message(receiver.url()))
    assert (result.outcome, result.status) == (Outcome.PERMANENT, 401)
    assert receiver.effects == {}


@pytest.mark.parametrize(
    ("answer", "outcome", "retry_after_s"),
    [
        (Answer(500, {"error": "boom"}), Outcome.RETRY, None),
        (Answer(503, headers=(("Retry-After", "120"),)), Outcome.RETRY, 120),
        (Answer(429, headers=(("Retry-After", "30"),)), Outcome.RETRY, 30),
        (Answer(408), Outcome.RETRY, None),
        (Answer(404, {"error": "no such hook"}), Outcome.PERMANENT, None),
        (Answer(410), Outcome.PERMANENT, None),
        (Answer(301, headers=(("Location", "http://127.0.0.1:1/elsewhere"),)), Outcome.PERMANENT, None),
        (Answer(204, b""), Outcome.SENT, None),
    ],
)
async def test_what_each_answer_means(
    receiver: Receiver,
    client: httpx.AsyncClient,
    answer: Answer,
    outcome: Outcome,
    retry_after_s: float | None,
) -> None:
    receiver.script.append(answer)
    result = await WebhookChannel(client, secret=SECRET).send(_message(receiver.url()))
    assert (result.outcome, result.status, result.retry_after_s) == (outcome, answer.status, retry_after_s)
    assert len(receiver.deliveries) == 1  # a redirect is not followed


async def test_a_refused_connection_and_a_timeout_are_retried(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    refused = await WebhookChannel(client, secret=SECRET).send(
        _message(f"http://127.0.0.1:{free_port()}/hook")
    )
    assert refused.outcome is Outcome.RETRY
    assert refused.error is not None
    assert "ConnectError" in refused.error
    receiver.delay_s = 1.5  # the client's timeout is 1 s
    slow = await WebhookChannel(client, secret=SECRET).send(_message(receiver.url()))
    assert slow.outcome is Outcome.RETRY
    assert slow.error is not None
    assert slow.error.startswith("timeout")


async def test_a_recipient_that_is_not_a_url_fails_permanently(client: httpx.AsyncClient) -> None:
    result = await WebhookChannel(client, secret=SECRET).send(_message("13812345678"))
    assert result.outcome is Outcome.PERMANENT


def _gateway_request(receiver: Receiver) -> dict[str, Any]:
    (delivery,) = receiver.deliveries
    assert delivery.signed
    assert delivery.headers["idempotency-key"] == "alarm:123:escalated:1"
    body: dict[str, Any] = delivery.json()
    return body


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (
            {"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0", "RequestId": "F655A8D5"},
            Outcome.SENT,
        ),
        ({"Code": "isp.SYSTEM_ERROR", "Message": "System error"}, Outcome.RETRY),
        ({"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "bad number"}, Outcome.PERMANENT),
    ],
)
async def test_an_sms_reaches_its_gateway_as_a_sendsms_request(
    receiver: Receiver, client: httpx.AsyncClient, answer: dict[str, str], outcome: Outcome
) -> None:
    receiver.script.append(Answer(200, answer))
    config = SmsConfig(
        gateway_url=receiver.url("/sms"), sign_name="孝感智慧养老", templates={"alarm.escalated": "SMS_1"}
    )
    result = await SmsChannel(client, config, secret=SECRET).send(_message("13812345678", "sms"))
    assert result.outcome is outcome
    request = _gateway_request(receiver)
    assert (request["PhoneNumbers"], request["TemplateCode"], request["OutId"]) == (
        "13812345678",
        "SMS_1",
        "alarm:123:escalated:1",
    )
    assert json.loads(request["TemplateParam"])["elder_name"] == "王秀英"


async def test_a_gateway_failing_over_http_or_answering_nonsense_is_retried(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    config = SmsConfig(
        gateway_url=receiver.url("/sms"), sign_name="x", templates={"alarm.escalated": "SMS_1"}
    )
    receiver.script += [Answer(502), Answer(200, b"<html>proxy</html>")]
    channel = SmsChannel(client, config, secret=SECRET)
    assert (await channel.send(_message("13812345678", "sms"))).outcome is Outcome.RETRY
    assert (await channel.send(_message("13812345678", "sms"))).outcome is Outcome.RETRY


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ({"errcode": 0, "errmsg": "ok"}, Outcome.SENT),
        ({"errcode": 42001, "errmsg": "access_token expired"}, Outcome.RETRY),
        ({"errcode": 43101, "errmsg": "user refuse to accept the msg"}, Outcome.PERMANENT),
    ],
)
async def test_a_wechat_message_reaches_its_gateway_as_a_subscribe_message(
    receiver: Receiver, client: httpx.AsyncClient, answer: dict[str, Any], outcome: Outcome
) -> None:
    receiver.script.append(Answer(200, answer))
    templates = json.dumps({"alarm.escalated": {"template_id": "tpl", "data": {"thing1": "elder_name"}}})
    config = WeChatConfig.parse(gateway_url=receiver.url("/wechat"), templates_json=templates)
    result = await WeChatChannel(client, config, secret=SECRET).send(
        _message("oB_hN41zbT1OvATDONK5LccFIwwA", "wechat")
    )
    assert result.outcome is outcome
    request = _gateway_request(receiver)
    assert request["touser"] == "oB_hN41zbT1OvATDONK5LccFIwwA"
    assert request["data"] == {"thing1": {"value": "王秀英"}}


async def test_without_a_gateway_sms_and_wechat_fail_permanently_and_say_why(
    client: httpx.AsyncClient,
) -> None:
    channels = build_channels(Settings(notify_webhook_secret=SECRET), client)
    assert channels.names() == ["sms", "webhook", "wechat"]
    sms = await channels.send(_message("13812345678", "sms"))
    wechat = await channels.send(_message("oB_hN41zbT1OvATDONK5LccFIwwA", "wechat"))
    unknown = await channels.send(_message("x", "fax"))
    for result, setting in (
        (sms, "SMS_GATEWAY_URL"),
        (wechat, "WECHAT_GATEWAY_URL"),
        (unknown, "no channel 'fax'"),
    ):
        assert result.outcome is Outcome.PERMANENT
        assert result.error is not None
        assert setting in result.error


async def test_a_webhook_channel_needs_a_secret(client: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError, match="secret"):
        WebhookChannel(client, secret="")
