"""Visit verification: one case per exception rule of DOMAIN §5, callback sampling, quality score."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import get_args

import pytest

from dispatch.matching import CertificateInfo
from dispatch.policies import policies_on
from dispatch.verification import (
    EXCEPTION_REASON_CODES,
    Capture,
    CaptureMethod,
    ExceptionCode,
    ProviderStats,
    Verdict,
    VisitException,
    VisitRecord,
    provider_quality,
    select_callbacks,
    verify,
)

pytestmark = pytest.mark.unit

E = VisitException
SEEDED = policies_on(dt.date(2026, 12, 2))  # dispatch's seeded policy of the visit's day
POLICY = SEEDED.verification
BATH = SEEDED.service("BATH", "BATH")
T0 = dt.datetime(2026, 12, 2, 2, 0, tzinfo=dt.UTC)  # 10:00 Shanghai
HOME = (30.92, 113.91)
# 0.001° of latitude ≈ 111 m.
NEAR = Capture(T0, CaptureMethod.GPS, 30.9215, 113.91)  # ~167 m
OUT = Capture(T0 + dt.timedelta(minutes=50), CaptureMethod.GPS, 30.92, 113.91)
CERT = (CertificateInfo("eldercare_worker", 4, dt.date(2024, 1, 1), dt.date(2027, 1, 1)),)
NOW = T0 + dt.timedelta(hours=2)


def visit(**kw: object) -> VisitRecord:
    base: dict[str, object] = {
        "visit_id": 1,
        "service": BATH,
        "elder_id": 10,
        "caregiver_id": 20,
        "service_on": dt.date(2026, 12, 2),
        "scheduled_start": T0,
        "window_end": T0 + dt.timedelta(minutes=30),
        "home_lat": HOME[0],
        "home_lon": HOME[1],
        "rural": False,
        "check_in": NEAR,
        "check_out": OUT,
        "signed_off_at": OUT.at + dt.timedelta(minutes=1),
        "caregiver_certificates": CERT,
    }
    base.update(kw)
    return VisitRecord(**base)  # type: ignore[arg-type]


def _at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


CASES: list[tuple[str, dict[str, object], Verdict, tuple[VisitException, ...]]] = [
    ("clean visit", {}, Verdict.VERIFIED, ()),
    ("no check-in", {"check_in": None}, Verdict.EXCEPTION, (E.MISSING_CHECK_IN,)),
    (
        "no check-out",
        {"check_out": None, "signed_off_at": None},
        Verdict.EXCEPTION,
        (E.MISSING_CHECK_OUT, E.NO_SIGN_OFF),
    ),
    (
        "urban check-in 250 m away",
        {"check_in": Capture(T0, CaptureMethod.GPS, 30.92225, 113.91)},
        Verdict.EXCEPTION,
        (E.CHECK_IN_TOO_FAR,),
    ),
    (
        "rural check-in 250 m away",
        {"rural": True, "check_in": Capture(T0, CaptureMethod.GPS, 30.92225, 113.91)},
        Verdict.VERIFIED,
        (),
    ),
    (
        "rural check-in 600 m away",
        {"rural": True, "check_in": Capture(T0, CaptureMethod.GPS, 30.9254, 113.91)},
        Verdict.EXCEPTION,
        (E.CHECK_IN_TOO_FAR,),
    ),
    (
        "gps check-in without a position",
        {"check_in": Capture(T0, CaptureMethod.GPS)},
        Verdict.EXCEPTION,
        (E.CHECK_IN_TOO_FAR,),
    ),
    (
        "QR code at the door proves location",
        {"check_in": Capture(T0, CaptureMethod.QR, qr_matches=True)},
        Verdict.VERIFIED,
        (),
    ),
    (
        "QR code of another door",
        {"check_in": Capture(T0, CaptureMethod.QR, qr_matches=False)},
        Verdict.EXCEPTION,
        (E.CHECK_IN_TOO_FAR,),
    ),
    (
        "manual entry needs confirmation",
        {"check_in": Capture(T0, CaptureMethod.MANUAL)},
        Verdict.EXCEPTION,
        (E.MANUAL_ENTRY,),
    ),
    # 80% of 45 min is 36 min.
    (
        "35 min on site for a 45 min bath",
        {"check_out": Capture(_at(35), CaptureMethod.GPS, *HOME), "signed_off_at": _at(40)},
        Verdict.EXCEPTION,
        (E.SHORT_ON_SITE,),
    ),
    (
        "36 min on site is enough",
        {"check_out": Capture(_at(36), CaptureMethod.GPS, *HOME), "signed_off_at": _at(40)},
        Verdict.VERIFIED,
        (),
    ),
    ("overlaps another visit", {"other_visits": ((_at(-30), _at(10)),)}, Verdict.EXCEPTION, (E.OVERLAP,)),
    ("back-to-back visit is no overlap", {"other_visits": ((_at(-30), T0),)}, Verdict.VERIFIED, ()),
    (
        "certificate expired the day before",
        {
            "caregiver_certificates": (
                CertificateInfo("eldercare_worker", 4, dt.date(2024, 1, 1), dt.date(2026, 12, 1)),
            )
        },
        Verdict.EXCEPTION,
        (E.CERTIFICATE,),
    ),
    # The time element: a check-in up to 30 min (policy) before the scheduled start is on time.
    ("check-in 30 min early is on time", {"scheduled_start": _at(30)}, Verdict.VERIFIED, ()),
    (
        "check-in 31 min early",
        {"scheduled_start": _at(31)},
        Verdict.EXCEPTION,
        (E.EARLY_CHECK_IN,),
    ),
    (
        "check-in 3 h early, also too far",
        {"scheduled_start": _at(180), "check_in": Capture(T0, CaptureMethod.GPS, 30.92225, 113.91)},
        Verdict.EXCEPTION,
        (E.CHECK_IN_TOO_FAR, E.EARLY_CHECK_IN),
    ),
    (
        "manual check-in 3 h early",
        {"scheduled_start": _at(180), "check_in": Capture(T0, CaptureMethod.MANUAL)},
        Verdict.EXCEPTION,
        (E.MANUAL_ENTRY, E.EARLY_CHECK_IN),
    ),
    # ... and up to 30 min (policy) after the latest start promised: the order's window end.
    (
        "check-in 30 min after the window",
        {"scheduled_start": _at(-60), "window_end": _at(-30)},
        Verdict.VERIFIED,
        (),
    ),
    (
        "check-in 31 min after the window",
        {"scheduled_start": _at(-61), "window_end": _at(-31)},
        Verdict.EXCEPTION,
        (E.LATE_CHECK_IN,),
    ),
    (
        "assigned after its window: late from the scheduled start",
        {"scheduled_start": _at(-20), "window_end": _at(-120)},
        Verdict.VERIFIED,
        (),
    ),
    (
        "assigned after its window and 40 min late for it",
        {"scheduled_start": _at(-40), "window_end": _at(-120)},
        Verdict.EXCEPTION,
        (E.LATE_CHECK_IN,),
    ),
    ("sign-off not yet, within 24 h", {"signed_off_at": None}, Verdict.PENDING, ()),
    (
        "sign-off after 25 h",
        {"signed_off_at": OUT.at + dt.timedelta(hours=25)},
        Verdict.EXCEPTION,
        (E.NO_SIGN_OFF,),
    ),
]


@pytest.mark.parametrize(("name", "kw", "verdict", "exceptions"), CASES, ids=[c[0] for c in CASES])
def test_exception_rules(
    name: str, kw: dict[str, object], verdict: Verdict, exceptions: tuple[VisitException, ...]
) -> None:
    got = verify(visit(**kw), policy=POLICY, now=NOW)
    assert (got.verdict, got.exceptions) == (verdict, exceptions), name


def test_no_sign_off_after_24_hours_becomes_an_exception() -> None:
    got = verify(visit(signed_off_at=None), policy=POLICY, now=OUT.at + dt.timedelta(hours=24))
    assert got.exceptions == (E.NO_SIGN_OFF,)


def test_thresholds_are_data() -> None:
    strict = dataclasses.replace(POLICY, max_check_in_distance_urban_m=50.0)
    got = verify(visit(), policy=strict, now=NOW)
    assert got.exceptions == (E.CHECK_IN_TOO_FAR,)
    assert got.check_in_distance_m == pytest.approx(166.8, abs=0.5)
    assert got.on_site_s == 50 * 60
    early = visit(scheduled_start=_at(20))
    assert verify(early, policy=POLICY, now=NOW).exceptions == ()
    strict = dataclasses.replace(POLICY, early_check_in_s=10 * 60)
    assert verify(early, policy=strict, now=NOW).exceptions == (E.EARLY_CHECK_IN,)
    late = visit(scheduled_start=_at(-40), window_end=_at(-20))
    assert verify(late, policy=POLICY, now=NOW).exceptions == ()
    strict = dataclasses.replace(POLICY, late_check_in_s=10 * 60)
    assert verify(late, policy=strict, now=NOW).exceptions == (E.LATE_CHECK_IN,)


@pytest.mark.parametrize(("n", "k"), [(0, 0), (1, 1), (9, 1), (10, 1), (11, 2), (250, 25)])
def test_callbacks_sample_at_least_ten_percent(n: int, k: int) -> None:
    ids = list(range(1000, 1000 + n))
    chosen = select_callbacks(ids, ratio=0.1, seed=20261202)
    assert len(chosen) == k
    assert chosen <= set(ids)
    assert select_callbacks(ids, ratio=0.1, seed=20261202) == chosen  # reproducible for audit


def test_provider_quality() -> None:
    w = SEEDED.quality
    perfect = ProviderStats(100, 0, 5.0, 5.0, 0)
    assert provider_quality(perfect, weights=w) == 100.0
    worst = ProviderStats(0, 10, 1.0, 1.0, 5)
    assert provider_quality(worst, weights=w) == 0.0
    assert provider_quality(ProviderStats(0, 0, None, None, 0), weights=w) is None
    mid = ProviderStats(90, 10, 4.0, None, 1)
    # rating .75*.35 + callback .5*.25 + clean .9*.2 + complaints .9*.2 = 0.7475
    assert provider_quality(mid, weights=w) == 74.8


def test_the_api_lists_exactly_the_exception_codes_and_reason_codes() -> None:
    # ExceptionCode (the API's inline Literal) spells VisitException (what the rules return) again.
    assert list(get_args(ExceptionCode)) == [e.value for e in VisitException]
    assert EXCEPTION_REASON_CODES == (
        "gps_drift",
        "device_fault",
        "elder_not_home",
        "elder_unable_to_sign",
        "coordinator_entry",
        "caregiver_error",
        "certificate_renewed",
        "other",
    )
