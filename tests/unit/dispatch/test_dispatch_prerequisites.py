"""The pure rules of the service process (:mod:`dispatch.prerequisites`, :mod:`dispatch.agreements`):
which assessment is valid on a service day and why none is, which agreement covers a day (terminated,
renewed, another provider's), who may record which signature, and the seeded policy of which services
need an assessment."""

from __future__ import annotations

import datetime as dt

import pytest

from core.errors import Forbidden, Invalid
from core.identity.authz import Principal
from core.identity.models import Role
from core.policy import snapshot_from_rows
from dispatch.agreements import SignatureIn, missing_parties, required_parties, signing_refusal
from dispatch.models import AgreementParty, AgreementSignature, ServiceAgreement, SignatureMethod
from dispatch.prerequisites import (
    ASSESSMENT_POLICY,
    AgreementTerm,
    AssessmentFact,
    AssessmentMissing,
    assessment_check,
    covering_term,
    first_uncovered,
)
from dispatch.seed import POLICY_DEFAULTS, SERVICES

pytestmark = pytest.mark.unit

D = dt.date
TODAY = D(2026, 11, 20)
OLD = AssessmentFact(1, D(2025, 1, 10), D(2026, 1, 9), 2)  # expired in January
CURRENT = AssessmentFact(2, D(2025, 12, 1), D(2026, 11, 30), 3)  # valid today, through 30 November
RENEWED = AssessmentFact(3, D(2026, 11, 15), D(2027, 11, 14), 4)
AHEAD = AssessmentFact(4, D(2026, 12, 5), D(2027, 12, 4), 1)  # recorded ahead of its day


@pytest.mark.parametrize(
    ("facts", "day", "valid", "missing", "nearest"),
    [
        ((), D(2026, 11, 23), None, AssessmentMissing.NONE_ON_FILE, None),
        ((OLD,), D(2026, 11, 23), None, AssessmentMissing.EXPIRED, OLD),
        ((OLD, CURRENT), D(2026, 11, 23), CURRENT, None, CURRENT),
        ((OLD, CURRENT), D(2026, 11, 30), CURRENT, None, CURRENT),  # valid_until is inclusive
        ((OLD, CURRENT), D(2026, 12, 1), None, AssessmentMissing.EXPIRES_BEFORE_SERVICE, CURRENT),
        ((CURRENT, RENEWED), D(2026, 11, 23), RENEWED, None, RENEWED),  # the latest valid one
        ((CURRENT, RENEWED), D(2026, 12, 1), RENEWED, None, RENEWED),
        ((AHEAD,), D(2026, 12, 1), None, AssessmentMissing.ASSESSED_AFTER_SERVICE, AHEAD),
        ((AHEAD,), D(2026, 12, 5), AHEAD, None, AHEAD),
        ((OLD, AHEAD), D(2026, 12, 1), None, AssessmentMissing.EXPIRED, OLD),
    ],
)
def test_the_assessment_valid_on_the_day_or_why_none_is(
    facts: tuple[AssessmentFact, ...],
    day: dt.date,
    valid: AssessmentFact | None,
    missing: AssessmentMissing | None,
    nearest: AssessmentFact | None,
) -> None:
    check = assessment_check(
        facts, elder_id=7, service_code="CARE", day=day, today=TODAY, required=True, policy_ref="p"
    )
    assert (check.valid, check.missing, check.nearest) == (valid, missing, nearest)
    assert check.ok is (valid is not None)
    assert check.status == ("valid" if missing is None else missing.value)
    if not check.ok:
        err = check.error()
        assert (err.status, err.code) == (409, "dispatch.assessment_required")
        assert err.extra["missing"] == check.status
        assert err.extra["service_day"] == day.isoformat()
        assert "CARE" in err.detail


def test_a_service_that_needs_none_is_ok_without_one() -> None:
    check = assessment_check(
        (), elder_id=7, service_code="VISIT", day=TODAY, today=TODAY, required=False, policy_ref="p"
    )
    assert check.ok
    assert check.status == "none_on_file"  # shown all the same


def test_care_and_bathing_need_an_assessment_by_seeded_policy() -> None:
    policy = snapshot_from_rows(TODAY, [], POLICY_DEFAULTS)
    needs = {s.code: policy.entry_or_star(ASSESSMENT_POLICY, s.code).value["required"] for s in SERVICES}
    assert {code for code, required in needs.items() if required} == {"CARE", "BATH"}
    # A service added later, with no row of its own, needs none unless a row says so.
    assert policy.entry_or_star(ASSESSMENT_POLICY, "NEWSVC").value == {"required": False}
    later = snapshot_from_rows(
        D(2027, 1, 1),
        [(ASSESSMENT_POLICY, "VISIT", {"required": True}, D(2027, 1, 1), None)],
        POLICY_DEFAULTS,
    )
    assert (
        later.entry_or_star(ASSESSMENT_POLICY, "VISIT").ref()
        == "service.requires_assessment[VISIT]@2027-01-01"
    )


P, Q = 10, 11
NOVEMBER = AgreementTerm(1, P, D(2026, 11, 1), D(2026, 11, 30))
RENEWAL = AgreementTerm(2, P, D(2026, 12, 1), D(2027, 11, 30))
ENDED = AgreementTerm(3, P, D(2026, 11, 1), D(2027, 10, 31), ends_on=D(2026, 12, 10))
RIVAL = AgreementTerm(4, Q, D(2026, 11, 1), D(2027, 10, 31))


@pytest.mark.parametrize(
    ("term", "day", "covers"),
    [
        (NOVEMBER, D(2026, 11, 1), True),
        (NOVEMBER, D(2026, 11, 30), True),  # valid_to is inclusive
        (NOVEMBER, D(2026, 12, 1), False),
        (NOVEMBER, D(2026, 10, 31), False),
        (ENDED, D(2026, 12, 9), True),
        (ENDED, D(2026, 12, 10), False),  # the termination's first day is no longer covered
    ],
)
def test_an_agreement_covers_its_days_until_terminated(
    term: AgreementTerm, day: dt.date, covers: bool
) -> None:
    assert term.covers(day) is covers


def test_the_last_day_covered() -> None:
    assert (NOVEMBER.last_day, ENDED.last_day) == (D(2026, 11, 30), D(2026, 12, 9))
    never = AgreementTerm(5, P, D(2026, 12, 1), D(2027, 1, 1), ends_on=D(2026, 11, 25))
    assert never.last_day < never.valid_from
    assert not any(never.covers(D(2026, 11, 25) + dt.timedelta(days=n)) for n in range(60))


def test_renewals_chain_and_other_providers_do_not_count() -> None:
    terms = [NOVEMBER, RENEWAL, RIVAL]
    december = [D(2026, 11, 28) + dt.timedelta(days=n) for n in range(10)]
    assert first_uncovered(terms, december, P) is None
    assert first_uncovered([NOVEMBER, RIVAL], december, P) == D(2026, 12, 1)
    assert first_uncovered(terms, december, Q) is None
    assert first_uncovered(terms, [D(2027, 11, 1)], Q) == D(2027, 11, 1)
    assert covering_term(terms, D(2026, 11, 15), P) == NOVEMBER
    assert covering_term(terms, D(2026, 11, 15), Q) == RIVAL
    assert covering_term(terms, D(2026, 11, 15)) == RIVAL  # either provider: the one running longest
    assert covering_term([ENDED, RENEWAL], D(2026, 12, 5)) == RENEWAL


# --- Who records which signature -------------------------------------------------------------------------

ELDER_ID, GUARDIAN_ID = 100, 200


def _agreement(*, guardian: bool = False, signed: tuple[str, ...] = ()) -> ServiceAgreement:
    return ServiceAgreement(
        id=1,
        elder_id=ELDER_ID,
        provider_id=P,
        guardian_id=GUARDIAN_ID if guardian else None,
        signatures=[AgreementSignature(party=p) for p in signed],
    )


PROVIDER_ADMIN = Principal(user_id=1, username="pa", role=Role.PROVIDER_ADMIN, provider_id=P)
ELDER = Principal(
    user_id=2, username="e", role=Role.ELDER, elder_id=ELDER_ID, elder_ids=frozenset({ELDER_ID})
)
FAMILY = Principal(
    user_id=3, username="f", role=Role.FAMILY, guardian_id=GUARDIAN_ID, elder_ids=frozenset({ELDER_ID})
)
OTHER_FAMILY = Principal(
    user_id=4, username="g", role=Role.FAMILY, guardian_id=201, elder_ids=frozenset({ELDER_ID})
)
IN_APP, PAPER = SignatureMethod.IN_APP, SignatureMethod.PAPER_SCAN
E, G, PR = AgreementParty.ELDER, AgreementParty.GUARDIAN, AgreementParty.PROVIDER


@pytest.mark.parametrize(
    ("actor", "guardian", "signature", "refused"),
    [
        (PROVIDER_ADMIN, False, SignatureIn(PR), None),
        (PROVIDER_ADMIN, False, SignatureIn(PR, PAPER, "院长", "scan/1.pdf"), None),
        (PROVIDER_ADMIN, False, SignatureIn(E, PAPER, "老人", "scan/2.pdf"), None),
        (PROVIDER_ADMIN, False, SignatureIn(E), "agreement.not_your_party"),
        (PROVIDER_ADMIN, False, SignatureIn(E, PAPER, "老人"), "agreement.paper_incomplete"),
        (PROVIDER_ADMIN, True, SignatureIn(G, PAPER, "家属", "scan/3.pdf"), None),
        (PROVIDER_ADMIN, True, SignatureIn(E, PAPER, "老人", "scan/4.pdf"), "agreement.party_not_required"),
        (ELDER, False, SignatureIn(E), None),
        (ELDER, False, SignatureIn(E, PAPER, "老人", "scan/5.pdf"), "agreement.not_your_party"),
        (ELDER, False, SignatureIn(PR), "agreement.not_your_party"),
        (ELDER, True, SignatureIn(E), "agreement.party_not_required"),
        (FAMILY, True, SignatureIn(G), None),
        (FAMILY, False, SignatureIn(G), "agreement.party_not_required"),
        (FAMILY, True, SignatureIn(G, IN_APP, "家属"), "agreement.in_app_extra"),
        (OTHER_FAMILY, True, SignatureIn(G), "agreement.not_your_party"),
        (FAMILY, True, SignatureIn(PR), "agreement.not_your_party"),
    ],
)
def test_who_records_which_signature(
    actor: Principal, guardian: bool, signature: SignatureIn, refused: str | None
) -> None:
    found = signing_refusal(actor, _agreement(guardian=guardian), signature)
    assert (None if found is None else found.code) == refused
    if found is not None:
        assert isinstance(found, Forbidden if found.status == 403 else Invalid)


def test_the_parties_an_agreement_needs() -> None:
    assert required_parties(_agreement()) == (E, PR)
    assert required_parties(_agreement(guardian=True)) == (G, PR)
    assert missing_parties(_agreement(guardian=True, signed=("provider",))) == [G]
    assert missing_parties(_agreement(signed=("elder", "provider"))) == []
