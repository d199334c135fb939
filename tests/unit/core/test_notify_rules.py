"""The notification dispatcher's pure parts: the webhook signature, what an HTTP answer means, the
back-off and the decision after an attempt (``now`` and the jitter passed in)."""

from __future__ import annotations

import datetime as dt

import pytest

from core.notify.channel import DeliveryResult, Outcome
from core.notify.http import check_url, classify_status, json_body, parse_retry_after
from core.notify.retry import NOTIFY_POLICY_DEFAULTS, RETRY_KEY, RetryPolicy, backoff_s, decide, retry_policy
from core.notify.signing import SignatureInvalid, signature, signature_header, verify
from core.policy import POLICY_EPOCH, snapshot_from_rows

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 3, 1, 30, tzinfo=dt.UTC)
SECRET = "whsec-test"
BODY = json_body({"kind": "alarm.raised", "data": {"elder": "王秀英"}})
T = 1_764_725_400


# --- signing ----------------------------------------------------------------------------------------


def test_a_signed_body_verifies_and_returns_its_timestamp() -> None:
    header = signature_header(SECRET, T, BODY)
    assert header == f"t={T},v1={signature(SECRET, T, BODY)}"
    assert verify(SECRET, header, BODY, now_s=T + 10) == T


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, T, BODY) == expected


@pytest.mark.parametrize(
    ("header", "body", "secret", "now_s", "why"),
    [
        (None, BODY, SECRET, T, "no signature header"),
        (f"t={T}", BODY, SECRET, T, "lacks"),
        ("garbage", BODY, SECRET, T, "malformed"),
        (f"t=abc,v1={'0' * 64}", BODY, SECRET, T, "malformed timestamp"),
        (signature_header(SECRET, T, BODY), BODY + b" ", SECRET, T, "does not match"),
        (signature_header(SECRET, T, BODY), BODY, "another secret", T, "does not match"),
        (signature_header(SECRET, T, BODY), BODY, SECRET, T + 301, "tolerance"),
        (signature_header(SECRET, T, BODY), BODY, SECRET, T - 301, "tolerance"),
    ],
)
def test_a_tampered_unsigned_or_stale_request_is_refused(
    header: str | None, body: bytes, secret: str, now_s: int, why: str
) -> None:
    with pytest.raises(SignatureInvalid, match=why):
        verify(secret, header, body, now_s=now_s)


def test_during_a_rotation_either_secret_verifies() -> None:
    header = signature_header(["old-secret", "new-secret"], T, BODY)
    assert header.count("v1=") == 2
    assert verify("old-secret", header, BODY, now_s=T) == T
    assert verify("new-secret", header, BODY, now_s=T) == T


def test_the_body_is_canonical_utf8_json() -> None:
    assert json_body({"b": 1, "a": "王"}) == '{"a":"王","b":1}'.encode()


# --- what an answer means ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SENT),
        (202, Outcome.SENT),
        (204, Outcome.SENT),
        (301, Outcome.PERMANENT),
        (400, Outcome.PERMANENT),
        (401, Outcome.PERMANENT),
        (404, Outcome.PERMANENT),
        (410, Outcome.PERMANENT),
        (408, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (502, Outcome.RETRY),
        (503, Outcome.RETRY),
        (100, Outcome.PERMANENT),
    ],
)
def test_http_status_classification(status: int, outcome: Outcome) -> None:
    result = classify_status(status, body="nope")
    assert (result.outcome, result.status) == (outcome, status)
    if outcome is not Outcome.SENT:
        assert result.error is not None
        assert result.error.startswith(f"HTTP {status}: nope")


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert parse_retry_after("120", now=NOW) == 120
    assert parse_retry_after("Thu, 03 Dec 2026 01:31:30 GMT", now=NOW) == 90
    assert parse_retry_after("Thu, 03 Dec 2026 01:00:00 GMT", now=NOW) == 0
    assert parse_retry_after("soon", now=NOW) is None
    assert parse_retry_after(None, now=NOW) is None
    assert classify_status(429, retry_after_s=30).retry_after_s == 30


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://family.example/hook", True),
        ("http://127.0.0.1:8080/x?y=1", True),
        ("ftp://example.org/x", False),
        ("13812345678", False),
        ("https:///nohost", False),
        ("http://[::1", False),
    ],
)
def test_only_absolute_http_urls_are_posted_to(url: str, ok: bool) -> None:
    assert (check_url(url) is None) is ok


# --- back-off and the decision ----------------------------------------------------------------------

POLICY = RetryPolicy(base_s=10, max_s=3600, max_attempts=12)


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [
        (1, 5, 10),
        (2, 10, 20),
        (3, 20, 40),
        (8, 640, 1280),
        (9, 1280, 2560),
        (10, 1800, 3600),
        (60, 1800, 3600),
    ],
)
def test_backoff_doubles_up_to_the_cap_with_equal_jitter(attempt: int, low: float, high: float) -> None:
    assert backoff_s(POLICY, attempt, jitter=0.0) == low
    assert low < backoff_s(POLICY, attempt, jitter=0.999) < high
    with pytest.raises(ValueError, match="jitter"):
        backoff_s(POLICY, attempt, jitter=1.0)


def test_a_success_is_sent_and_a_permanent_failure_is_dead_at_once() -> None:
    assert decide(DeliveryResult.sent(), attempt=3, policy=POLICY, now=NOW, jitter=0.5).status == "sent"
    dead = decide(DeliveryResult.permanent("HTTP 404"), attempt=1, policy=POLICY, now=NOW, jitter=0.5)
    assert (dead.status, dead.error, dead.next_attempt_at) == ("dead", "HTTP 404", None)


def test_a_retryable_failure_waits_its_backoff_until_the_last_attempt() -> None:
    first = decide(DeliveryResult.retry("HTTP 500"), attempt=1, policy=POLICY, now=NOW, jitter=0.0)
    assert (first.status, first.next_attempt_at, first.error) == (
        "pending",
        NOW + dt.timedelta(seconds=5),
        "HTTP 500",
    )
    last = decide(DeliveryResult.retry("HTTP 500"), attempt=12, policy=POLICY, now=NOW, jitter=0.0)
    assert (last.status, last.error) == ("dead", "gave up after 12 attempts: HTTP 500")


def test_retry_after_is_honoured_when_longer_and_capped_at_the_maximum() -> None:
    later = decide(
        DeliveryResult.retry("429", retry_after_s=300), attempt=1, policy=POLICY, now=NOW, jitter=0
    )
    assert later.next_attempt_at == NOW + dt.timedelta(seconds=300)
    sooner = decide(DeliveryResult.retry("429", retry_after_s=1), attempt=3, policy=POLICY, now=NOW, jitter=0)
    assert sooner.next_attempt_at == NOW + dt.timedelta(seconds=20)
    capped = decide(
        DeliveryResult.retry("429", retry_after_s=86_400), attempt=1, policy=POLICY, now=NOW, jitter=0
    )
    assert capped.next_attempt_at == NOW + dt.timedelta(seconds=3600)


def test_the_retry_policy_is_dated_data_with_a_per_channel_override() -> None:
    rows = [
        (RETRY_KEY, "sms", {"base_seconds": 60, "max_seconds": 600, "max_attempts": 3}, POLICY_EPOCH, None)
    ]
    snapshot = snapshot_from_rows(dt.date(2026, 12, 3), rows, NOTIFY_POLICY_DEFAULTS)
    assert retry_policy(snapshot, "webhook") == RetryPolicy(10, 3600, 12)
    assert retry_policy(snapshot, "sms") == RetryPolicy(60, 600, 3)


@pytest.mark.parametrize(
    "value",
    [
        {"base_seconds": 0, "max_seconds": 10, "max_attempts": 3},
        {"base_seconds": 20, "max_seconds": 10, "max_attempts": 3},
        {"base_seconds": 1, "max_seconds": 10, "max_attempts": 0},
    ],
)
def test_a_retry_policy_that_could_not_work_is_refused(value: dict[str, int]) -> None:
    snapshot = snapshot_from_rows(dt.date(2026, 12, 3), [(RETRY_KEY, "*", value, POLICY_EPOCH, None)])
    with pytest.raises(ValueError, match="base_seconds"):
        retry_policy(snapshot, "webhook")
