"""Visit verification (EVV, DOMAIN §5): the six elements, the exception rules, callback sampling and
the provider quality score. Pure; thresholds arrive as data (:class:`VerificationPolicy`).

Units: metres, seconds, UTC instants.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from core.clock import local_date
from core.geo import haversine_m
from dispatch.matching import CertificateInfo, ServiceRule


class CaptureMethod(enum.StrEnum):
    GPS = "gps"  # the caregiver app's position
    QR = "qr"  # the QR code at the elder's door
    MANUAL = "manual"  # entered by a coordinator


class VisitException(enum.StrEnum):
    MISSING_CHECK_IN = "missing_check_in"
    MISSING_CHECK_OUT = "missing_check_out"
    CHECK_IN_TOO_FAR = "check_in_too_far"
    # The time element: checked in earlier than the scheduled start allows (policy tolerance).
    EARLY_CHECK_IN = "early_check_in"
    # ... or later than the order's window (and the visit's schedule) allows (policy tolerance).
    LATE_CHECK_IN = "late_check_in"
    SHORT_ON_SITE = "short_on_site"
    OVERLAP = "overlap"
    CERTIFICATE = "certificate"
    NO_SIGN_OFF = "no_sign_off"
    # Manual entries carry no position proof; a coordinator confirms them with a reason code.
    MANUAL_ENTRY = "manual_entry"


# The same codes for the API, where a Literal keeps the schema inline (an enum becomes a component);
# a unit test holds the two equal.
ExceptionCode = Literal[
    "missing_check_in",
    "missing_check_out",
    "check_in_too_far",
    "early_check_in",
    "late_check_in",
    "short_on_site",
    "overlap",
    "certificate",
    "no_sign_off",
    "manual_entry",
]

# Why a coordinator resolved a visit exception as they did (DOMAIN §5); the resolution itself is
# approved, rejected or corrected. A Literal rather than an enum so that the API schema lists the
# values inline, as it always has; :data:`EXCEPTION_REASON_CODES` is the same list for run-time checks.
ReasonCode = Literal[
    "gps_drift",
    "device_fault",
    "elder_not_home",
    "elder_unable_to_sign",
    "coordinator_entry",
    "caregiver_error",
    "certificate_renewed",
    "other",
]
EXCEPTION_REASON_CODES: tuple[str, ...] = get_args(ReasonCode)


class Verdict(enum.StrEnum):
    VERIFIED = "verified"
    EXCEPTION = "exception"
    PENDING = "pending"  # complete except the sign-off, whose 24 h have not yet passed


@dataclass(frozen=True, slots=True)
class Capture:
    """A check-in or check-out: when, where (None for manual entry) and how."""

    at: dt.datetime
    method: CaptureMethod
    lat: float | None = None
    lon: float | None = None
    qr_matches: bool = False  # the scanned code belongs to this elder's door


@dataclass(frozen=True, slots=True)
class VisitRecord:
    """The six elements (service, elder, caregiver, date, location, start/end) plus evidence.
    ``service`` is what the service asked on ``service_on`` (dated policy of that day)."""

    visit_id: int
    service: ServiceRule
    elder_id: int
    caregiver_id: int
    service_on: dt.date
    # The time element (UTC): the visit's scheduled start and the end of its order's window, the
    # latest start promised to the elder ("the visit must start in [window start, window end]").
    scheduled_start: dt.datetime
    window_end: dt.datetime
    home_lat: float
    home_lon: float
    rural: bool
    check_in: Capture | None
    check_out: Capture | None
    signed_off_at: dt.datetime | None
    caregiver_certificates: tuple[CertificateInfo, ...]
    # The caregiver's other checked-in visits as [start, end) UTC intervals.
    other_visits: tuple[tuple[dt.datetime, dt.datetime], ...] = ()


@dataclass(frozen=True, slots=True)
class VerificationPolicy:
    """Thresholds of DOMAIN §5 valid on the service day (policy keys ``verification.*``, read by
    :func:`dispatch.policies.policies_from`). ``min_on_site_ratio`` applies to the service's minimum
    time on site of the same day (:attr:`ServiceRule.min_minutes`); ``early_check_in_s``: how many
    seconds before the scheduled start a check-in may come without an exception; ``late_check_in_s``:
    how many after the latest promised start (:func:`late_check_in`)."""

    max_check_in_distance_urban_m: float
    max_check_in_distance_rural_m: float
    min_on_site_ratio: float
    sign_off_within_s: int
    callback_ratio: float
    early_check_in_s: int
    late_check_in_s: int


@dataclass(frozen=True, slots=True)
class VerificationResult:
    verdict: Verdict
    exceptions: tuple[VisitException, ...]
    on_site_s: int | None
    check_in_distance_m: float | None


def _has_certificate(visit: VisitRecord) -> bool:
    rule = visit.service
    if rule.certificate_kind is None:
        return True
    return any(
        c.kind == rule.certificate_kind
        and c.valid_on(visit.service_on)
        and (
            rule.max_certificate_level is None
            or (c.level is not None and c.level <= rule.max_certificate_level)
        )
        for c in visit.caregiver_certificates
    )


def verify(visit: VisitRecord, *, policy: VerificationPolicy, now: dt.datetime) -> VerificationResult:  # noqa: C901 - one branch per verification rule of DOMAIN §5, each yielding its own reason code
    """Check one visit against every exception rule; all failing rules are reported, in a fixed order."""
    found: list[VisitException] = []
    distance: float | None = None
    on_site: int | None = None
    cin, cout = visit.check_in, visit.check_out
    if cin is None:
        found.append(VisitException.MISSING_CHECK_IN)
    else:
        if cin.method == CaptureMethod.MANUAL:
            found.append(VisitException.MANUAL_ENTRY)
        elif cin.method == CaptureMethod.QR and cin.qr_matches:
            distance = 0.0 if cin.lat is None or cin.lon is None else _distance(visit, cin)
        elif cin.lat is None or cin.lon is None:
            found.append(VisitException.CHECK_IN_TOO_FAR)
        else:
            distance = _distance(visit, cin)
            limit = (
                policy.max_check_in_distance_rural_m if visit.rural else policy.max_check_in_distance_urban_m
            )
            if distance > limit:
                found.append(VisitException.CHECK_IN_TOO_FAR)
        if early_check_in(cin.at, visit.scheduled_start, policy=policy):
            found.append(VisitException.EARLY_CHECK_IN)
        if late_check_in(cin.at, visit.scheduled_start, visit.window_end, policy=policy):
            found.append(VisitException.LATE_CHECK_IN)
    if cout is None:
        found.append(VisitException.MISSING_CHECK_OUT)
    if cin is not None and cout is not None:
        on_site = int((cout.at - cin.at).total_seconds())
        if (
            visit.service.min_minutes > 0
            and on_site < policy.min_on_site_ratio * visit.service.min_minutes * 60
        ):
            found.append(VisitException.SHORT_ON_SITE)
        for start, end in visit.other_visits:
            if start < cout.at and cin.at < end:
                found.append(VisitException.OVERLAP)
                break
    if not _has_certificate(visit):
        found.append(VisitException.CERTIFICATE)
    pending = False
    if visit.signed_off_at is None:
        since = cout.at if cout is not None else None
        if since is not None and (now - since).total_seconds() < policy.sign_off_within_s:
            pending = True
        else:
            found.append(VisitException.NO_SIGN_OFF)
    elif cout is not None and (visit.signed_off_at - cout.at).total_seconds() > policy.sign_off_within_s:
        found.append(VisitException.NO_SIGN_OFF)
    if found:
        verdict = Verdict.EXCEPTION
    elif pending:
        verdict = Verdict.PENDING
    else:
        verdict = Verdict.VERIFIED
    return VerificationResult(verdict, tuple(found), on_site, distance)


def early_check_in(at: dt.datetime, scheduled_start: dt.datetime, *, policy: VerificationPolicy) -> bool:
    """Whether a check-in at ``at`` comes more than ``policy.early_check_in_s`` seconds before the
    visit's scheduled start (the time element of EVV, DOMAIN §5)."""
    return (scheduled_start - at).total_seconds() > policy.early_check_in_s


def late_check_in(
    at: dt.datetime, scheduled_start: dt.datetime, window_end: dt.datetime, *, policy: VerificationPolicy
) -> bool:
    """Whether a check-in at ``at`` comes more than ``policy.late_check_in_s`` seconds after the latest
    start promised: the end of the order's window, or the scheduled start if that is later (an order
    assigned by hand after its window)."""
    return (at - max(scheduled_start, window_end)).total_seconds() > policy.late_check_in_s


def _distance(visit: VisitRecord, cap: Capture) -> float:
    if cap.lat is None or cap.lon is None:
        raise ValueError("capture has no position")
    return haversine_m(visit.home_lat, visit.home_lon, cap.lat, cap.lon)


def service_date_of(check_in: Capture) -> dt.date:
    """The Asia/Shanghai date a visit happened on."""
    return local_date(check_in.at)


def select_callbacks(visit_ids: Sequence[int], *, ratio: float, seed: int) -> frozenset[int]:
    """A random sample of at least ``ratio`` of the verified visits (rounded up) for phone callbacks.

    ``seed`` makes the choice reproducible for audit (e.g. the day's date as an integer).
    """
    if not visit_ids:
        return frozenset()
    k = min(len(visit_ids), math.ceil(ratio * len(visit_ids)))
    return frozenset(random.Random(seed).sample(sorted(visit_ids), k))


@dataclass(frozen=True, slots=True)
class ProviderStats:
    """One provider's verified visits over a period and what happened to them."""

    verified_visits: int
    exception_visits: int
    mean_rating: float | None  # 1..5 from elders/families
    mean_callback_score: float | None  # 1..5 from callbacks
    complaints: int


@dataclass(frozen=True, slots=True)
class QualityWeights:
    """Weights of the provider quality score (policy ``dispatch.quality_weights``)."""

    rating: float
    callback: float
    exceptions: float
    complaints: float


def provider_quality(stats: ProviderStats, *, weights: QualityWeights) -> float | None:
    """A quality score 0..100 (None with no visits). Missing ratings count as neutral (3 of 5)."""
    total = stats.verified_visits + stats.exception_visits
    if total == 0:
        return None
    rating = ((stats.mean_rating if stats.mean_rating is not None else 3.0) - 1.0) / 4.0
    callback = ((stats.mean_callback_score if stats.mean_callback_score is not None else 3.0) - 1.0) / 4.0
    clean = 1.0 - stats.exception_visits / total
    # Complaints per 100 visits: 0 → 1.0, 10 or more → 0.
    complaint = max(0.0, 1.0 - stats.complaints * 100 / total / 10)
    w = weights
    s = w.rating * rating + w.callback * callback + w.exceptions * clean + w.complaints * complaint
    return round(100 * s / (w.rating + w.callback + w.exceptions + w.complaints), 1)
