"""Wire types of the service process in order and visit details (``GET /api/v1/orders/{id}``,
``GET /api/v1/visits/{id}``): the service agreement behind the order and the elder's ability
assessment on its service day (:mod:`dispatch.prerequisites`)."""

from __future__ import annotations

import datetime as dt

import msgspec

from dispatch.prerequisites import AgreementCheck, AssessmentCheck


class AgreementStatusRead(msgspec.Struct):
    """The service agreement behind an order or visit. ``status``: ``covered`` (a signed agreement with
    ``provider_id`` covers its service on its day: ``agreement_id``, ``valid_from``..``last_day``),
    ``missing`` (``required``: an order of a series, and no signed agreement with the series' provider
    covers the day) or ``not_required`` (a one-off order, with no agreement with the provider)."""

    status: str
    required: bool
    provider_id: int | None
    agreement_id: int | None
    valid_from: dt.date | None
    last_day: dt.date | None


class AssessmentStatusRead(msgspec.Struct):
    """The elder's ability assessment on the service day. ``status``: ``valid`` or what is missing
    (``none_on_file``, ``expired``, ``expires_before_service``, ``assessed_after_service``);
    ``required``: whether the service needs one, by the policy row ``policy``."""

    status: str
    required: bool
    policy: str
    assessment_id: int | None
    level: int | None
    assessed_on: dt.date | None
    valid_until: dt.date | None


def agreement_status_read(a: AgreementCheck) -> AgreementStatusRead:
    t = a.term
    return AgreementStatusRead(
        status=a.status,
        required=a.required,
        provider_id=a.provider_id,
        agreement_id=None if t is None else t.agreement_id,
        valid_from=None if t is None else t.valid_from,
        last_day=None if t is None else t.last_day,
    )


def assessment_status_read(a: AssessmentCheck) -> AssessmentStatusRead:
    shown = a.valid or a.nearest
    return AssessmentStatusRead(
        status=a.status,
        required=a.required,
        policy=a.policy_ref,
        assessment_id=None if shown is None else shown.id,
        level=None if shown is None else shown.final_level,
        assessed_on=None if shown is None else shown.assessed_on,
        valid_until=None if shown is None else shown.valid_until,
    )
