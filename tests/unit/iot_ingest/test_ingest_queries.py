"""Pure parts of the IoT HTTP edge: bucket widths, time windows, rollup planning, broker hashes."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from core.errors import Invalid
from iot_ingest.provisioning import mosquitto_hash, verify_mosquitto_hash
from iot_ingest.queries import check_window, parse_bucket, plan_source

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC)
H, M = dt.timedelta(hours=1), dt.timedelta(minutes=1)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10),
        ("30s", 30),
        ("1m", 60),
        ("5m", 300),
        ("90m", 5400),
        ("1h", 3600),
        ("1d", 86400),
        ("7d", 604800),
    ],
)
def test_parse_bucket(text: str, seconds: int) -> None:
    assert parse_bucket(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "vitals.bucket_invalid"),
        ("5", "vitals.bucket_invalid"),
        ("m", "vitals.bucket_invalid"),
        ("05m", "vitals.bucket_invalid"),
        ("-5m", "vitals.bucket_invalid"),
        ("5M", "vitals.bucket_invalid"),
        ("1w", "vitals.bucket_invalid"),
        ("9s", "vitals.bucket_out_of_range"),
        ("8d", "vitals.bucket_out_of_range"),
        ("999999h", "vitals.bucket_out_of_range"),
    ],
)
def test_parse_bucket_refuses(text: str, code: str) -> None:
    with pytest.raises(Invalid) as err:
        parse_bucket(text)
    assert err.value.code == code


def test_check_window_defaults_and_zones() -> None:
    day = dt.timedelta(days=1)
    assert check_window(None, None, now=NOW, default=day, longest=day, prefix="p") == (NOW - day, NOW)
    beijing = dt.timezone(dt.timedelta(hours=8))
    start = dt.datetime(2026, 11, 20, 8, 0, tzinfo=beijing)  # 00:00 UTC
    lo, hi = check_window(start, None, now=NOW, default=day, longest=day, prefix="p")
    assert (lo, hi) == (dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC), NOW)
    assert lo.tzinfo == dt.UTC


@pytest.mark.parametrize(
    ("start", "end", "code"),
    [
        (NOW, NOW, "p.range_invalid"),
        (NOW + H, NOW, "p.range_invalid"),
        (NOW - dt.timedelta(days=2), NOW, "p.range_too_long"),
        (dt.datetime(2026, 11, 20, 1, 0), None, "time.timezone_required"),  # noqa: DTZ001 - the point
        (None, dt.datetime(2026, 11, 20, 1, 0), "time.timezone_required"),  # noqa: DTZ001
    ],
)
def test_check_window_refuses(start: dt.datetime | None, end: dt.datetime | None, code: str) -> None:
    with pytest.raises(Invalid) as err:
        check_window(start, end, now=NOW, default=H, longest=dt.timedelta(days=1), prefix="p")
    assert err.value.code == code


@pytest.mark.parametrize(
    ("start", "end", "bucket", "table", "until", "snapped"),
    [
        # Sub-minute buckets: raw only.
        (NOW - H, NOW, dt.timedelta(seconds=30), None, None, (NOW - H, NOW)),
        # Whole minutes: minute rollup up to now - 5 min, raw after.
        (NOW - H, NOW, 5 * M, "telemetry_1m", NOW - 5 * M, (NOW - H, NOW)),
        # Whole hours: hour rollup up to now - 2 h.
        (NOW - 24 * H, NOW, H, "telemetry_1h", NOW - 2 * H, (NOW - 24 * H, NOW)),
        # 90 minutes is not whole hours: the minute rollup serves it (grid from 2000-01-01 00:00).
        (NOW - 24 * H, NOW, 90 * M, "telemetry_1m", NOW - 5 * M, (NOW - 24 * H - 30 * M, NOW + H)),
        # A range entirely inside the lag of the hour rollup falls back to the minute rollup.
        (NOW - H, NOW, H, "telemetry_1m", NOW - 5 * M, (NOW - H, NOW)),
        # A range that is all recent: raw.
        (NOW - 4 * M, NOW, M, None, None, (NOW - 4 * M, NOW)),
        # A range in the past entirely covered by the rollup.
        (NOW - 48 * H, NOW - 24 * H, H, "telemetry_1h", NOW - 24 * H, (NOW - 48 * H, NOW - 24 * H)),
        # Unaligned ends snap outward to whole buckets.
        (NOW - H + 7 * M, NOW - 3 * M, 5 * M, "telemetry_1m", NOW - 5 * M, (NOW - H + 5 * M, NOW)),
    ],
)
def test_plan_source(
    start: dt.datetime,
    end: dt.datetime,
    bucket: dt.timedelta,
    table: str | None,
    until: dt.datetime | None,
    snapped: tuple[dt.datetime, dt.datetime],
) -> None:
    plan = plan_source(start, end, bucket, now=NOW)
    assert (plan.table, plan.rollup_until, (plan.start, plan.end)) == (table, until, snapped)


def test_plan_source_caps_bucket_count() -> None:
    with pytest.raises(Invalid) as err:
        plan_source(NOW - dt.timedelta(days=1), NOW, dt.timedelta(seconds=10), now=NOW)
    assert err.value.code == "vitals.too_many_buckets"
    assert (
        plan_source(NOW - dt.timedelta(seconds=20000), NOW, dt.timedelta(seconds=10), now=NOW).table is None
    )


def test_mosquitto_hash_matches_mosquitto_passwd() -> None:
    # Written by `mosquitto_passwd -b FILE u1 secret` (Mosquitto 2.0.11).
    known = (
        "$7$101$MKXanR2eGGC3RulH$"
        "71mgohfIyxGXBPLirb6PTxOuNmOvRdrwLLXQ8uZnvcFUJ9PB2ZpMVPTjPomnQPMCbtKF1unDNSgVxsV3KgZD0w=="
    )
    salt = base64.b64decode("MKXanR2eGGC3RulH")
    assert mosquitto_hash("secret", salt=salt) == known
    assert verify_mosquitto_hash("secret", known)
    assert not verify_mosquitto_hash("Secret", known)
    assert not verify_mosquitto_hash("secret", "$6$not-ours")
    fresh = mosquitto_hash("secret")
    assert fresh != mosquitto_hash("secret")  # random salt
    assert verify_mosquitto_hash("secret", fresh)
