"""The SMS and WeChat adapters' documented contract, pure: the vendor request each formats from an
outbox row, and what each vendor answer means."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from core.notify.channel import DeliveryResult, Message, Outcome
from core.notify.sms import SmsConfig, sms_request, sms_result
from core.notify.wechat import WeChatConfig, wechat_request, wechat_result

pytestmark = pytest.mark.unit

AT = dt.datetime(2026, 12, 3, 1, 30, tzinfo=dt.UTC)
ADDRESS = "孝感市孝南区书院街道槐荫社区长征路18号3单元502室（近菜市场）"
PAYLOAD = {
    "alarm_id": 123,
    "elder_name": "王秀英",
    "type": "SOS",
    "raised_at": "2026-12-03 09:30",
    "address": ADDRESS,
    "critical": True,
    "contacts": [{"name": "李明"}],
    "note": None,
}
SMS = SmsConfig.parse(
    gateway_url="http://sms.gateway/send",
    sign_name="孝感智慧养老",
    templates_json='{"alarm.escalated": "SMS_300000001"}',
)
WECHAT = WeChatConfig.parse(
    gateway_url="http://wechat.gateway/send",
    templates_json=json.dumps(
        {
            "alarm.escalated": {
                "template_id": "tpl-alarm",
                "page": "pages/alarm/detail?id={alarm_id}",
                "data": {
                    "thing1": "elder_name",
                    "phrase2": "type",
                    "time3": "raised_at",
                    "thing4": "address",
                },
            },
            "visit.reminder": {"template_id": "tpl-visit", "data": {"thing1": "missing_field"}},
        }
    ),
)


def _message(recipient: str, kind: str = "alarm.escalated", payload: dict[str, Any] | None = None) -> Message:
    return Message(
        id=1,
        channel="sms",
        recipient=recipient,
        kind=kind,
        ref="alarm:123",
        payload=PAYLOAD if payload is None else payload,
        idempotency_key="alarm:123:escalated:1",
        created_at=AT,
    )


def test_an_sms_is_a_sendsms_request_with_string_template_params() -> None:
    request = sms_request(_message("+86 138-1234-5678"), SMS)
    assert not isinstance(request, DeliveryResult)
    assert request == {
        "PhoneNumbers": "13812345678",
        "SignName": "孝感智慧养老",
        "TemplateCode": "SMS_300000001",
        "TemplateParam": request["TemplateParam"],
        "OutId": "alarm:123:escalated:1",
    }
    assert json.loads(request["TemplateParam"]) == {
        "alarm_id": "123",
        "elder_name": "王秀英",
        "type": "SOS",
        "raised_at": "2026-12-03 09:30",
        "address": ADDRESS,
        "critical": "true",
    }


@pytest.mark.parametrize(
    ("recipient", "kind", "config", "why"),
    [
        ("12345", "alarm.escalated", SMS, "not a mainland mobile number"),
        ("13812345678", "alarm.raised", SMS, "no SMS template for kind 'alarm.raised'"),
        (
            "13812345678",
            "alarm.escalated",
            SmsConfig(templates={"alarm.escalated": "SMS_1"}),
            "no SMS signature",
        ),
    ],
)
def test_an_sms_that_cannot_be_formed_fails_permanently(
    recipient: str, kind: str, config: SmsConfig, why: str
) -> None:
    result = sms_request(_message(recipient, kind), config)
    assert isinstance(result, DeliveryResult)
    assert result.outcome is Outcome.PERMANENT
    assert result.error is not None
    assert why in result.error


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (
            {"Code": "OK", "Message": "OK", "BizId": "9006197469364984400", "RequestId": "F655A8D5"},
            Outcome.SENT,
        ),
        ({"Code": "isp.SYSTEM_ERROR", "Message": "System error"}, Outcome.RETRY),
        ({"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "flow control"}, Outcome.RETRY),
        ({"Code": "isv.AMOUNT_NOT_ENOUGH", "Message": "balance"}, Outcome.RETRY),
        ({"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "bad number"}, Outcome.PERMANENT),
        ({"Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "bad template"}, Outcome.PERMANENT),
        ({"Message": "no code"}, Outcome.RETRY),
    ],
)
def test_the_sms_vendors_codes(answer: dict[str, Any], outcome: Outcome) -> None:
    assert sms_result(answer).outcome is outcome


def test_malformed_sms_templates_are_refused_at_start() -> None:
    for bad in ('["SMS_1"]', '{"alarm.raised": 1}', '{"alarm.raised": ""}'):
        with pytest.raises(ValueError, match="SMS templates"):
            SmsConfig.parse(gateway_url="", sign_name="x", templates_json=bad)


def test_a_wechat_subscribe_message_maps_fields_cuts_values_and_fills_the_page() -> None:
    request = wechat_request(_message("oB_hN41zbT1OvATDONK5LccFIwwA"), WECHAT)
    assert request == {
        "touser": "oB_hN41zbT1OvATDONK5LccFIwwA",
        "template_id": "tpl-alarm",
        "page": "pages/alarm/detail?id=123",
        "data": {
            "thing1": {"value": "王秀英"},
            "phrase2": {"value": "SOS"},
            "time3": {"value": "2026-12-03 09:30"},
            "thing4": {"value": ADDRESS[:20]},  # a thing holds 20 characters
        },
        "miniprogram_state": "formal",
        "lang": "zh_CN",
    }


@pytest.mark.parametrize(
    ("recipient", "kind", "why"),
    [
        ("not an openid!", "alarm.escalated", "not a WeChat openid"),
        ("oB_hN41zbT1OvATDONK5LccFIwwA", "alarm.raised", "no WeChat template for kind 'alarm.raised'"),
        ("oB_hN41zbT1OvATDONK5LccFIwwA", "visit.reminder", "payload has no 'missing_field'"),
    ],
)
def test_a_wechat_message_that_cannot_be_formed_fails_permanently(
    recipient: str, kind: str, why: str
) -> None:
    result = wechat_request(_message(recipient, kind), WECHAT)
    assert isinstance(result, DeliveryResult)
    assert result.outcome is Outcome.PERMANENT
    assert result.error is not None
    assert why in result.error


def test_a_wechat_page_needs_its_fields() -> None:
    payload = {k: v for k, v in PAYLOAD.items() if k != "alarm_id"}
    result = wechat_request(_message("oB_hN41zbT1OvATDONK5LccFIwwA", payload=payload), WECHAT)
    assert isinstance(result, DeliveryResult)
    assert result.error is not None
    assert "page" in result.error


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ({"errcode": 0, "errmsg": "ok"}, Outcome.SENT),
        ({"errcode": -1, "errmsg": "system error"}, Outcome.RETRY),
        ({"errcode": 42001, "errmsg": "access_token expired"}, Outcome.RETRY),
        ({"errcode": 45009, "errmsg": "reach max api daily quota limit"}, Outcome.RETRY),
        ({"errcode": 43101, "errmsg": "user refuse to accept the msg"}, Outcome.PERMANENT),
        ({"errcode": 40003, "errmsg": "invalid openid"}, Outcome.PERMANENT),
        ({"errcode": 47003, "errmsg": "argument invalid!"}, Outcome.PERMANENT),
        ({"errmsg": "?"}, Outcome.RETRY),
    ],
)
def test_the_wechat_errcodes(answer: dict[str, Any], outcome: Outcome) -> None:
    assert wechat_result(answer).outcome is outcome


def test_malformed_wechat_templates_are_refused_at_start() -> None:
    for bad in ('["x"]', '{"k": {"data": {}}}', '{"k": {"template_id": "t", "data": {"thing1": 3}}}'):
        with pytest.raises(ValueError, match="WeChat template"):
            WeChatConfig.parse(gateway_url="", templates_json=bad)
