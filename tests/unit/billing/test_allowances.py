"""The allowance roster rules (billing.allowances): band changes the month after the birthday month,
stops the month after a death or a move, back-pay for a late registration, additions and stoppages
month over month, and a policy change applying from its date. Amounts computed by hand from the
seeded defaults (80-89: 50 yuan, 90-99: 100, 100+: 300; disability level 2/3/4: 100/200/300)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest

from billing.allowances import (
    AllowanceKind,
    AllowancePolicy,
    AllowancePolicyInvalid,
    AssessmentSpan,
    CategorySpan,
    Change,
    ElderFacts,
    PaidBefore,
    Reason,
    RosterLine,
    add_months,
    allowance_policy,
    checksum,
    entitlement,
    facts_day,
    month_label,
    parse_month,
    policies_needed,
    previous_from_facts,
    roster,
    totals,
)
from billing.seed import POLICY_DEFAULTS
from core.policy import snapshot_from_rows

pytestmark = pytest.mark.unit

OLD = AllowanceKind.OLD_AGE
DIS = AllowanceKind.DISABILITY
D = dt.date
EARLY = D(2020, 1, 1)  # registered long before any month tested
Row = tuple[str, str, Mapping[str, Any], dt.date, dt.date | None]


def M(text: str) -> dt.date:
    return parse_month(text)


def policy_on(day: dt.date, rows: Iterable[Row] = ()) -> AllowancePolicy:
    return allowance_policy(snapshot_from_rows(day, rows, POLICY_DEFAULTS))


def policies(month: dt.date, rows: Sequence[Row] = ()) -> dict[dt.date, AllowancePolicy]:
    """The policy of every month :func:`roster` may read for ``month`` (a generous window)."""
    return {add_months(month, -k): policy_on(add_months(month, -k), rows) for k in range(25)}


def elder(
    elder_id: int = 1,
    birth_on: dt.date = D(1940, 3, 10),
    *,
    registered_on: dt.date = EARLY,
    status: str = "active",
    status_on: dt.date | None = None,
    categories: Sequence[CategorySpan] = (),
    assessments: Sequence[AssessmentSpan] = (),
    district_id: int = 7,
) -> ElderFacts:
    return ElderFacts(
        elder_id=elder_id,
        district_id=district_id,
        birth_on=birth_on,
        registered_on=registered_on,
        status=status,
        status_on=status_on,
        categories=tuple(categories),
        assessments=tuple(assessments),
    )


def run(
    kind: AllowanceKind,
    month: str,
    facts: Sequence[ElderFacts],
    *,
    rows: Sequence[Row] = (),
    previous: Mapping[int, PaidBefore] | None = None,
) -> list[RosterLine]:
    """The roster of ``month``; the month before from the same facts unless ``previous`` is given."""
    m = M(month)
    pols = policies(m, rows)
    before = previous_from_facts(kind, add_months(m, -1), facts, pols[add_months(m, -1)])
    return roster(kind, m, facts, pols, before if previous is None else previous)


def one(lines: Sequence[RosterLine]) -> RosterLine:
    assert len(lines) == 1, lines
    return lines[0]


# --- Months ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("month", "n", "expected"),
    [
        ("2026-11", 1, "2026-12"),
        ("2026-12", 1, "2027-01"),
        ("2026-01", -1, "2025-12"),
        ("2026-03", -15, "2024-12"),
    ],
)
def test_add_months(month: str, n: int, expected: str) -> None:
    assert month_label(add_months(M(month), n)) == expected


@pytest.mark.parametrize(
    ("month", "day"), [("2026-03", D(2026, 2, 28)), ("2024-03", D(2024, 2, 29)), ("2027-01", D(2026, 12, 31))]
)
def test_a_month_follows_the_last_day_of_the_month_before(month: str, day: dt.date) -> None:
    assert facts_day(M(month)) == day


@pytest.mark.parametrize("text", ["2026-1", "2026-13", "26-01", "2026/01", "abcd-ef", "2026-00", ""])
def test_parse_month_refuses_what_is_not_a_month(text: str) -> None:
    with pytest.raises(ValueError, match=r"month|not a month"):
        parse_month(text)


# --- Old-age bands: the month after the birthday month ----------------------------------------------


@pytest.mark.parametrize(
    ("birth_on", "month", "band"),
    [
        (D(1946, 5, 10), "2026-05", None),  # turns 80 on 10 May: not in May
        (D(1946, 5, 10), "2026-06", "80-89"),  # the month after the birthday month
        (D(1946, 5, 31), "2026-06", "80-89"),  # a birthday on the month's last day: the same
        (D(1946, 6, 1), "2026-06", None),  # a birthday on the 1st: its own month is not paid
        (D(1946, 6, 1), "2026-07", "80-89"),
        (D(1936, 8, 15), "2026-08", "80-89"),  # turns 90 in August
        (D(1936, 8, 15), "2026-09", "90-99"),
        (D(1926, 12, 1), "2026-12", "90-99"),  # turns 100 on 1 December
        (D(1926, 12, 1), "2027-01", "100+"),
        (D(1944, 2, 29), "2024-03", "80-89"),  # 80 on 29 February 2024 (a leap year)
        (D(1944, 2, 29), "2024-02", None),
        (D(1960, 1, 1), "2026-12", None),  # 66: no band
    ],
)
def test_band_follows_the_age_at_the_end_of_the_month_before(
    birth_on: dt.date, month: str, band: str | None
) -> None:
    got = entitlement(OLD, elder(birth_on=birth_on), M(month), policy_on(M(month)))
    assert (got.band if got else None) == band
    if got is not None:
        assert got.fen == {"80-89": 5000, "90-99": 10_000, "100+": 30_000}[band or ""]
        assert got.policy_ref == f"allowance.old_age[{band}]@2026-01-01"


def test_turning_80_is_an_addition_the_month_after_the_birthday_month() -> None:
    facts = [elder(birth_on=D(1946, 5, 10))]
    assert run(OLD, "2026-05", facts) == []
    line = one(run(OLD, "2026-06", facts))
    assert (line.change, line.reason, line.band, line.monthly_fen) == (
        Change.ADDED,
        Reason.TURNED_AGE,
        "80-89",
        5000,
    )
    assert (line.backpay_months, line.backpay_fen, line.amount_fen) == (0, 0, 5000)
    assert one(run(OLD, "2026-07", facts)).change == Change.CONTINUED


def test_turning_90_changes_the_band_the_month_after() -> None:
    facts = [elder(birth_on=D(1936, 8, 15))]
    aug = one(run(OLD, "2026-08", facts))
    assert (aug.change, aug.band, aug.amount_fen) == (Change.CONTINUED, "80-89", 5000)
    sep = one(run(OLD, "2026-09", facts))
    assert (sep.change, sep.reason, sep.previous_band, sep.band, sep.amount_fen) == (
        Change.CHANGED,
        Reason.BAND_CHANGED,
        "80-89",
        "90-99",
        10_000,
    )


# --- Stops: the month after a death or a move ------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "status_on", "last_paid", "stop_month", "reason"),
    [
        ("deceased", D(2026, 7, 15), "2026-07", "2026-08", Reason.DECEASED),
        ("deceased", D(2026, 7, 31), "2026-07", "2026-08", Reason.DECEASED),
        ("deceased", D(2026, 8, 1), "2026-08", "2026-09", Reason.DECEASED),
        ("moved", D(2026, 7, 1), "2026-07", "2026-08", Reason.MOVED),
    ],
)
def test_payment_stops_the_month_after_a_death_or_a_move(
    status: str, status_on: dt.date, last_paid: str, stop_month: str, reason: Reason
) -> None:
    facts = [elder(status=status, status_on=status_on)]
    paid = one(run(OLD, last_paid, facts))
    assert (paid.change, paid.amount_fen) == (Change.CONTINUED, 5000)
    stopped = one(run(OLD, stop_month, facts))
    assert (stopped.change, stopped.reason, stopped.amount_fen) == (Change.STOPPED, reason, 0)
    assert (stopped.band, stopped.previous_band, stopped.event_on) == ("80-89", "80-89", status_on)
    # Once stopped, the elder is on no later roster.
    assert run(OLD, month_label(add_months(M(stop_month), 1)), facts) == []


def test_a_hospitalised_elder_is_still_paid() -> None:
    line = one(run(OLD, "2026-08", [elder(status="hospitalised", status_on=D(2026, 6, 3))]))
    assert (line.change, line.amount_fen) == (Change.CONTINUED, 5000)


def test_a_death_recorded_late_stops_against_the_stored_roster() -> None:
    """The month before was paid (stored roster) though the death, recorded since, predates it: the
    stop comes now, dated, and is not lost because the rules alone would not have paid that month."""
    facts = [elder(status="deceased", status_on=D(2026, 5, 2))]
    paid = {1: PaidBefore(1, 7, "80-89")}
    line = one(run(OLD, "2026-08", facts, previous=paid))
    assert (line.change, line.reason, line.event_on) == (Change.STOPPED, Reason.DECEASED, D(2026, 5, 2))


# --- Back-pay for a late registration --------------------------------------------------------------


def test_a_late_registration_is_back_paid_up_to_the_window() -> None:
    # 80 since March 2020, registered on 15 October 2026: first paid in November, with the 12 months
    # of the window (November 2025 - October 2026) at 50 yuan.
    facts = [elder(birth_on=D(1940, 3, 10), registered_on=D(2026, 10, 15))]
    assert run(OLD, "2026-10", facts) == []
    line = one(run(OLD, "2026-11", facts))
    assert (line.change, line.reason) == (Change.ADDED, Reason.LATE_REGISTRATION)
    assert (line.monthly_fen, line.backpay_months, line.backpay_fen, line.amount_fen) == (
        5000,
        12,
        60_000,
        65_000,
    )
    assert line.backpay_refs[0] == "2025-11:allowance.old_age[80-89]@2026-01-01"
    assert len(line.backpay_refs) == 12
    # The month after, paid as usual: nothing twice.
    dec = one(run(OLD, "2026-12", facts))
    assert (dec.change, dec.backpay_months, dec.amount_fen) == (Change.CONTINUED, 0, 5000)


def test_back_pay_counts_only_the_months_since_the_entitlement_began() -> None:
    # 80 on 20 January 2026, so entitled from February; registered 3 October: February-October.
    facts = [elder(birth_on=D(1946, 1, 20), registered_on=D(2026, 10, 3))]
    line = one(run(OLD, "2026-11", facts))
    assert (line.backpay_months, line.backpay_fen) == (9, 45_000)


def test_back_pay_pays_each_month_at_its_own_band() -> None:
    # 90 on 2 April 2026: November 2025-April 2026 at 50 yuan (6), May-October at 100 (6).
    facts = [elder(birth_on=D(1936, 4, 2), registered_on=D(2026, 10, 15))]
    line = one(run(OLD, "2026-11", facts))
    assert (line.band, line.monthly_fen, line.backpay_months, line.backpay_fen) == (
        "90-99",
        10_000,
        12,
        90_000,
    )


def test_back_pay_pays_each_month_at_its_own_policy() -> None:
    # 80-89 raised to 60 yuan from June 2026: November 2025-May 2026 at 50 (7), June-October at 60 (5).
    rows: list[Row] = [
        ("allowance.old_age", "80-89", {"min_age": 80, "max_age": 89, "fen": 6000}, D(2026, 6, 1), None)
    ]
    facts = [elder(birth_on=D(1940, 3, 10), registered_on=D(2026, 10, 15))]
    line = one(run(OLD, "2026-11", facts, rows=rows))
    assert (line.monthly_fen, line.backpay_months, line.backpay_fen) == (6000, 12, 7 * 5000 + 5 * 6000)
    assert "2026-06:allowance.old_age[80-89]@2026-06-01" in line.backpay_refs


def test_the_back_pay_window_is_policy() -> None:
    rows: list[Row] = [("allowance.backpay", "*", {"months": 3}, D(2026, 11, 1), None)]
    facts = [elder(birth_on=D(1940, 3, 10), registered_on=D(2026, 10, 15))]
    line = one(run(OLD, "2026-11", facts, rows=rows))
    assert (line.backpay_months, line.backpay_fen) == (3, 15_000)
    none = [("allowance.backpay", "*", {"months": 0}, D(2026, 11, 1), None)]
    line = one(run(OLD, "2026-11", facts, rows=none))
    assert (line.reason, line.backpay_months, line.amount_fen) == (Reason.REGISTERED, 0, 5000)


def test_registering_before_the_birthday_month_ends_is_no_late_registration() -> None:
    # Registered in October, turning 80 in October: entitled from November, nothing owed.
    facts = [elder(birth_on=D(1946, 10, 5), registered_on=D(2026, 10, 20))]
    line = one(run(OLD, "2026-11", facts))
    assert (line.reason, line.backpay_months, line.amount_fen) == (Reason.TURNED_AGE, 0, 5000)


def test_back_pay_is_on_the_first_month_only() -> None:
    """Registered in September: back-paid on October's roster; November continues (the month before
    as these rules give it) without paying the window again."""
    facts = [elder(birth_on=D(1940, 3, 10), registered_on=D(2026, 9, 15))]
    oct_ = one(run(OLD, "2026-10", facts))
    assert (oct_.reason, oct_.backpay_months) == (Reason.LATE_REGISTRATION, 12)
    nov = one(run(OLD, "2026-11", facts))
    assert (nov.change, nov.backpay_fen) == (Change.CONTINUED, 0)


# --- Disability care allowance ----------------------------------------------------------------------

SUBSISTENCE = CategorySpan("subsistence", D(2026, 1, 1))


def assessed(level: int, on: dt.date, until: dt.date | None = None) -> AssessmentSpan:
    return AssessmentSpan(level, on, until or on + dt.timedelta(days=364))


def test_disability_starts_the_month_after_the_assessment() -> None:
    facts = [elder(categories=[SUBSISTENCE], assessments=[assessed(3, D(2026, 6, 10))])]
    assert run(DIS, "2026-06", facts) == []
    line = one(run(DIS, "2026-07", facts))
    assert (line.change, line.reason, line.band, line.amount_fen) == (
        Change.ADDED,
        Reason.ASSESSED,
        "3",
        20_000,
    )
    assert line.policy_ref == "allowance.disability[3]@2026-01-01"


def test_disability_needs_a_category_the_policy_names() -> None:
    veteran = [
        elder(categories=[CategorySpan("veteran", D(2026, 1, 1))], assessments=[assessed(4, D(2026, 2, 1))])
    ]
    assert run(DIS, "2026-08", veteran) == []
    granted = [
        elder(
            categories=[CategorySpan("low_income", D(2026, 8, 20))], assessments=[assessed(2, D(2026, 2, 1))]
        )
    ]
    assert run(DIS, "2026-08", granted) == []
    line = one(run(DIS, "2026-09", granted))
    assert (line.reason, line.band, line.amount_fen) == (Reason.CATEGORY_GRANTED, "2", 10_000)


def test_disability_stops_the_month_after_the_category_ends() -> None:
    facts = [
        elder(
            categories=[CategorySpan("subsistence", D(2026, 1, 1), D(2026, 9, 30))],
            assessments=[assessed(3, D(2026, 2, 1))],
        )
    ]
    assert one(run(DIS, "2026-10", facts)).change == Change.CONTINUED
    line = one(run(DIS, "2026-11", facts))
    assert (line.change, line.reason, line.event_on, line.amount_fen) == (
        Change.STOPPED,
        Reason.CATEGORY_ENDED,
        D(2026, 9, 30),
        0,
    )


def test_disability_stops_when_the_assessment_expires() -> None:
    facts = [elder(categories=[SUBSISTENCE], assessments=[assessed(3, D(2025, 9, 15), D(2026, 9, 14))])]
    assert one(run(DIS, "2026-09", facts)).change == Change.CONTINUED
    line = one(run(DIS, "2026-10", facts))
    assert (line.reason, line.event_on) == (Reason.ASSESSMENT_EXPIRED, D(2026, 9, 14))


@pytest.mark.parametrize(
    ("new_level", "change", "reason", "fen"),
    [
        (4, Change.CHANGED, Reason.LEVEL_CHANGED, 30_000),
        (1, Change.STOPPED, Reason.LEVEL_NOT_PAID, 0),
        (3, Change.CONTINUED, Reason.CONTINUED, 20_000),
    ],
)
def test_a_reassessment_counts_from_the_month_after(
    new_level: int, change: Change, reason: Reason, fen: int
) -> None:
    facts = [
        elder(
            categories=[SUBSISTENCE],
            assessments=[assessed(3, D(2026, 2, 1)), assessed(new_level, D(2026, 9, 5))],
        )
    ]
    assert one(run(DIS, "2026-09", facts)).band == "3"
    line = one(run(DIS, "2026-10", facts))
    assert (line.change, line.reason, line.amount_fen) == (change, reason, fen)


def test_disability_late_registration_is_back_paid() -> None:
    facts = [
        elder(
            registered_on=D(2026, 10, 2),
            categories=[SUBSISTENCE],
            assessments=[assessed(2, D(2026, 6, 15))],
        )
    ]
    line = one(run(DIS, "2026-11", facts))
    # Entitled from July: July-October owed at 100 yuan.
    assert (line.reason, line.backpay_months, line.backpay_fen, line.amount_fen) == (
        Reason.LATE_REGISTRATION,
        4,
        40_000,
        50_000,
    )


# --- Policy changes apply from their date -----------------------------------------------------------


def test_a_policy_change_applies_from_the_first_month_starting_on_or_after_its_date() -> None:
    raise_jan: list[Row] = [
        ("allowance.old_age", "80-89", {"min_age": 80, "max_age": 89, "fen": 6000}, D(2027, 1, 1), None)
    ]
    raise_mid: list[Row] = [
        ("allowance.old_age", "80-89", {"min_age": 80, "max_age": 89, "fen": 6000}, D(2026, 12, 15), None)
    ]
    facts = [elder()]
    for rows in (raise_jan, raise_mid):
        dec = one(run(OLD, "2026-12", facts, rows=rows))
        jan = one(run(OLD, "2027-01", facts, rows=rows))
        assert (dec.amount_fen, jan.amount_fen) == (5000, 6000)
        assert jan.change == Change.CONTINUED
        assert jan.policy_ref == f"allowance.old_age[80-89]@{rows[0][3].isoformat()}"


def test_a_new_band_in_policy_adds_and_an_ended_one_stops() -> None:
    # From 2027 the city also pays 75-79 (30 yuan); the 80-89 row ends on 2027-02-28.
    rows: list[Row] = [
        ("allowance.old_age", "75-79", {"min_age": 75, "max_age": 79, "fen": 3000}, D(2027, 1, 1), None),
        (
            "allowance.old_age",
            "80-89",
            {"min_age": 80, "max_age": 89, "fen": 5000},
            D(2026, 1, 1),
            D(2027, 2, 28),
        ),
    ]
    young = elder(2, D(1950, 1, 1))
    jan = run(OLD, "2027-01", [young], rows=rows)
    assert [(x.change, x.reason, x.band, x.amount_fen) for x in jan] == [
        (Change.ADDED, Reason.TURNED_AGE, "75-79", 3000)
    ]
    # After the row's end the seeded default applies again (the policy reader's rule): still paid.
    assert one(run(OLD, "2027-03", [elder()], rows=rows)).amount_fen == 5000


# --- The roster as a whole --------------------------------------------------------------------------


def test_additions_and_stoppages_month_over_month() -> None:
    facts = [
        elder(1, D(1940, 3, 10)),  # continues
        elder(2, D(1946, 10, 5)),  # turns 80 in October: added in November
        elder(3, D(1936, 10, 1)),  # turns 90 in October: changed in November
        elder(4, D(1930, 1, 1), status="deceased", status_on=D(2026, 10, 9)),  # stopped in November
        elder(5, D(1941, 1, 1), registered_on=D(2026, 10, 30)),  # late: added with back-pay
        elder(6, D(1960, 1, 1)),  # too young: on no roster
        elder(7, D(1935, 1, 1), status="moved", status_on=D(2026, 8, 1)),  # stopped in September already
    ]
    lines = run(OLD, "2026-11", facts)
    got = [(x.elder_id, x.change, x.reason, x.amount_fen) for x in lines]
    assert got == [
        (1, Change.CONTINUED, Reason.CONTINUED, 5000),
        (2, Change.ADDED, Reason.TURNED_AGE, 5000),
        (3, Change.CHANGED, Reason.BAND_CHANGED, 10_000),
        (4, Change.STOPPED, Reason.DECEASED, 0),
        (5, Change.ADDED, Reason.LATE_REGISTRATION, 5000 + 12 * 5000),
    ]
    t = totals(lines)
    assert (t.lines, t.paid, t.added, t.changed, t.continued, t.stopped) == (5, 4, 2, 1, 1, 1)
    assert (t.monthly_fen, t.backpay_fen, t.backpay_months) == (25_000, 60_000, 12)
    assert t.total_fen == sum(x.amount_fen for x in lines) == 85_000


def test_lines_are_ordered_by_district_then_elder_and_the_checksum_ignores_input_order() -> None:
    facts = [elder(5, district_id=2), elder(3, district_id=9), elder(4, district_id=2)]
    lines = run(OLD, "2026-11", facts)
    assert [(x.district_id, x.elder_id) for x in lines] == [(2, 4), (2, 5), (9, 3)]
    assert checksum(lines) == checksum(run(OLD, "2026-11", list(reversed(facts))))
    assert checksum(lines[:2]) != checksum(lines)


def test_an_elder_paid_before_but_absent_from_the_facts_is_stopped() -> None:
    lines = roster(OLD, M("2026-11"), [], policies(M("2026-11")), {9: PaidBefore(9, 3, "90-99")})
    assert [(x.elder_id, x.change, x.reason, x.band) for x in lines] == [
        (9, Change.STOPPED, Reason.NO_LONGER_ELIGIBLE, "90-99")
    ]


def test_the_roster_needs_the_policy_of_each_month_it_reads() -> None:
    m = M("2026-11")
    assert policies_needed(m, 2) == [M("2026-09"), M("2026-10"), m]
    assert policies_needed(m, 0) == [M("2026-10"), m]
    with pytest.raises(ValueError, match=r"no policy for 2025-11, .*, 2026-10$"):
        roster(OLD, m, [], {m: policy_on(m)}, {})


def test_an_elder_given_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="given twice"):
        run(OLD, "2026-11", [elder(1), elder(1)])


def test_the_seeded_policy_reads_as_bands_levels_and_a_window() -> None:
    p = policy_on(D(2026, 11, 1))
    assert [(b.scope, b.min_age, b.max_age, b.fen) for b in p.bands] == [
        ("100+", 100, None, 30_000),
        ("80-89", 80, 89, 5000),
        ("90-99", 90, 99, 10_000),
    ]
    assert [(r.level, r.fen) for r in p.levels] == [(2, 10_000), (3, 20_000), (4, 30_000)]
    assert p.levels[0].categories == {"destitute", "subsistence", "low_income"}
    assert (p.backpay_months, p.youngest_age) == (12, 80)


def test_a_malformed_policy_value_is_named() -> None:
    rows: list[Row] = [
        ("allowance.old_age", "80-89", {"min_age": 80, "max_age": 89, "fen": 50.5}, D(2026, 1, 1), None)
    ]
    with pytest.raises(TypeError, match=r"allowance.old_age\[80-89\]@2026-01-01 fen"):
        policy_on(D(2026, 11, 1), rows)


def test_a_disability_scope_that_is_not_a_level_is_named() -> None:
    rows: list[Row] = [
        (
            "allowance.disability",
            "severe",
            {"fen": 20_000, "categories": ["subsistence"]},
            D(2026, 1, 1),
            None,
        )
    ]
    with pytest.raises(AllowancePolicyInvalid, match=r"allowance.disability\[severe\]@2026-01-01: the scope"):
        policy_on(D(2026, 11, 1), rows)
