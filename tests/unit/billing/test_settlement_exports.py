"""The pure parts of settlement's downloads (billing.settlement_exports): the name mask, the billed
quantity, the words for outcomes and signals, and the tally that every totals row and summary sheet is
built from (fen sums; the lines rejected at review left out after review)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from billing.adjudication import Reason
from billing.settlement_exports import (
    LINE_COLUMNS,
    Tally,
    group_columns,
    mask_name,
    outcome_name,
    quantity,
    signal_names,
)
from billing.settlement_models import SettlementLine, StatementKind
from billing.signals import Signal

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("name", "masked"),
    [("张三", "张*"), ("欧阳小华", "欧**华"), ("王小明", "王*明"), ("李", "*"), ("", ""), (" 赵六 ", "赵*")],
)
def test_the_name_mask_keeps_the_surname(name: str, masked: str) -> None:
    assert mask_name(name) == masked


@pytest.mark.parametrize(
    ("unit", "duration_s", "expected"),
    [("hour", 3600, "1.00"), ("hour", 5400, "1.50"), ("hour", 2700, "0.75"), ("hour", 3000, "0.83"),
     ("visit", 2700, "1"), ("meal", 0, "1")],
)  # fmt: skip
def test_quantity_is_hours_for_hourly_services_else_one(unit: str, duration_s: int, expected: str) -> None:
    assert quantity(unit, duration_s) == Decimal(expected)
    assert str(quantity(unit, duration_s)) == expected


def test_words() -> None:
    assert outcome_name("passed", True, "zh") == "通过"
    assert outcome_name("rejected", False, "zh") == "拒付"
    assert outcome_name("rejected", True, "en") == "Rejected for the payers (co-pay stands)"
    assert signal_names(0, "zh") is None
    assert signal_names(Signal.CAREGIVER_OVERLOAD | Signal.HOSPITAL_DAY, "zh") == (
        "护理员当日服务次数超出能力；老人当日住院"
    )
    assert signal_names(Signal.BILLING_JUMP, "en") == "a sudden jump in the provider's billing"


def test_columns_fit_the_sheets() -> None:
    assert len(LINE_COLUMNS) == 25
    provider = group_columns(StatementKind.PROVIDER)
    assert [c.header for c in provider[1:3]] == ["机构编号", "机构名称"]
    assert [c.header for c in group_columns(StatementKind.DISTRICT)[1:3]] == ["区县编号", "区县名称"]
    assert sum(c.total for c in provider) == 3 + 6 + 2 + len(Reason)


def _line(
    amount: int, parts: tuple[int, int, int, int], *, reason: int | None = None, payable: bool = True
) -> SettlementLine:
    ltc, voucher, local, copay = parts
    return SettlementLine(
        amount_fen=amount, outcome="passed" if reason is None else "rejected", reason=reason, payable=payable,
        ltc_fen=ltc, voucher_fen=voucher, local_fen=local, copay_fen=copay, signals=0,
        service_on=dt.date(2026, 10, 1),
    )  # fmt: skip


def test_the_tally_sums_fen_and_leaves_out_lines_rejected_at_review() -> None:
    t = Tally()
    t.add_line(_line(9000, (8100, 450, 0, 450)), None)
    t.add_line(_line(1200, (0, 600, 0, 600)), "approved")
    t.add_line(_line(4000, (0, 0, 3600, 400)), "rejected")
    t.add_line(_line(3000, (0, 0, 0, 3000), reason=Reason.NOT_COVERED), None)
    t.add_line(_line(4000, (0, 0, 0, 0), reason=Reason.UNITS_MISMATCH, payable=False), None)
    assert (t.lines, t.passed, t.rejected, t.rejected_at_review) == (5, 3, 2, 1)
    assert t.price_fen == 9000 + 1200 + 4000 + 3000 + 4000
    assert t.settled_fen == 9000 + 1200 + 4000 + 3000 == sum(t.parts.values())
    assert t.parts == {"ltc": 8100, "voucher": 1050, "local": 3600, "copay": 4450}
    assert t.after_review_fen == t.settled_fen - 4000 == sum(t.parts_after_review.values())
    assert t.parts_after_review == {"ltc": 8100, "voucher": 1050, "local": 0, "copay": 4050}
    assert (t.reasons[Reason.NOT_COVERED], t.reasons[Reason.UNITS_MISMATCH], t.reasons[Reason.DUPLICATE]) == (
        1,
        1,
        0,
    )
    assert t.reason_price_fen[Reason.UNITS_MISMATCH] == 4000
    whole = Tally()
    whole.add(t)
    whole.add(t)
    assert (whole.lines, whole.settled_fen, whole.parts["copay"]) == (10, 2 * t.settled_fen, 2 * 4450)
    assert whole.reasons[Reason.NOT_COVERED] == 2
    assert t.lines == 5  # adding it elsewhere leaves it as it was
