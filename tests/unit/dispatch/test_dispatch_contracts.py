"""The checks of a provider's contract list (pure): known services, ordered ranges, no overlaps."""

from __future__ import annotations

import datetime as dt

import pytest

from core.errors import Invalid
from dispatch.contracts import ContractTerm, check_terms

pytestmark = pytest.mark.unit

KNOWN = frozenset({"BATH", "CLEAN", "VISIT"})
D = dt.date


def test_valid_terms_come_back_in_service_and_start_order() -> None:
    terms = [
        ContractTerm("VISIT", D(2027, 1, 1)),
        ContractTerm("CLEAN", D(2026, 1, 1), D(2026, 12, 31)),
        ContractTerm("VISIT", D(2026, 1, 1), D(2026, 12, 31)),  # ends the day before the next starts
        ContractTerm("BATH", D(2026, 3, 1), D(2026, 3, 1)),  # one day
    ]
    assert check_terms(terms, KNOWN) == [terms[3], terms[1], terms[2], terms[0]]
    assert check_terms([], KNOWN) == []


@pytest.mark.parametrize(
    ("terms", "code"),
    [
        ([ContractTerm("NOPE", D(2026, 1, 1))], "contract.service_unknown"),
        ([ContractTerm("VISIT", D(2026, 2, 1), D(2026, 1, 31))], "contract.range_invalid"),
        (  # the same day twice
            [ContractTerm("VISIT", D(2026, 1, 1)), ContractTerm("VISIT", D(2026, 1, 1), D(2026, 3, 1))],
            "contract.overlap",
        ),
        (  # an open-ended range overlaps every later one
            [ContractTerm("VISIT", D(2026, 1, 1)), ContractTerm("VISIT", D(2027, 1, 1), D(2027, 3, 1))],
            "contract.overlap",
        ),
        (  # sharing only the last day (valid_to is inclusive)
            [
                ContractTerm("CLEAN", D(2026, 7, 1)),
                ContractTerm("CLEAN", D(2026, 1, 1), D(2026, 7, 1)),
            ],
            "contract.overlap",
        ),
    ],
)
def test_bad_terms_are_refused_with_a_stable_code(terms: list[ContractTerm], code: str) -> None:
    with pytest.raises(Invalid) as caught:
        check_terms(terms, KNOWN)
    assert (caught.value.status, caught.value.code) == (422, code)


def test_the_same_range_for_two_services_is_no_overlap() -> None:
    terms = [ContractTerm("VISIT", D(2026, 1, 1)), ContractTerm("CLEAN", D(2026, 1, 1))]
    assert [t.service_code for t in check_terms(terms, KNOWN)] == ["CLEAN", "VISIT"]
