"""The live feed's settled mark (:class:`callcentre.feed.Settled`): the cursor a console may carry
moves over an id only once every id below it has arrived or has waited out its hold."""

from __future__ import annotations

import pytest

from callcentre.feed import Arrival, Settled

pytestmark = pytest.mark.unit


def test_in_order_ids_move_the_mark_one_by_one() -> None:
    s = Settled(10, hold_s=2.0)
    assert [s.arrive(i, 0.0) for i in (11, 12, 13)] == [Arrival.NEW] * 3
    assert s.value == 13
    assert s.deadline() is None


def test_an_id_above_a_gap_waits_for_the_gap_and_then_both_settle() -> None:
    """11 commits before 10 (ids are taken at insert, not at commit): the mark stays at 9 until 10 arrives."""
    s = Settled(9, hold_s=2.0)
    assert s.arrive(11, 0.0) is Arrival.NEW
    assert s.value == 9
    assert s.deadline() == 2.0
    assert s.arrive(10, 0.5) is Arrival.NEW
    assert s.value == 11
    assert s.deadline() is None


def test_a_gap_is_given_up_after_the_hold_and_a_late_commit_is_flagged() -> None:
    s = Settled(9, hold_s=2.0)
    s.arrive(11, 0.0)
    s.arrive(12, 1.0)
    assert not s.expire(1.99)
    assert s.value == 9
    assert s.expire(2.0)  # 10 waited 2 s behind 11: given up, and 11, 12 settle with it
    assert s.value == 12
    assert s.arrive(10, 5.0) is Arrival.LATE  # its transaction was long, not rolled back
    assert s.arrive(10, 5.1) is Arrival.DUPLICATE


def test_each_missing_id_waits_from_when_an_id_above_it_arrived() -> None:
    """Two gaps: 10 (behind 11, since t=0) and 12 (behind 13, since t=1.5). Giving up 10 at t=2 does
    not give up 12 with it: 12 has its own 2 s, until t=3.5."""
    s = Settled(9, hold_s=2.0)
    s.arrive(11, 0.0)
    s.arrive(13, 1.5)
    assert s.expire(2.0)
    assert s.value == 11
    assert s.deadline() == 3.5
    assert not s.expire(3.4)
    assert s.arrive(12, 3.0) is Arrival.NEW
    assert s.value == 13


def test_a_rolled_back_range_is_given_up_in_one_go() -> None:
    """A rolled-back bulk insert leaves many ids unused for ever; they all waited behind the same id."""
    s = Settled(100, hold_s=1.0)
    s.arrive(5_101, 0.0)
    assert s.expire(1.0)
    assert s.value == 5_101


def test_ids_at_or_below_the_start_are_late_unless_seen() -> None:
    """The feed starts at the highest committed id; a transaction in flight then commits a lower one
    afterwards: it is delivered (late), not dropped."""
    s = Settled(50, hold_s=2.0)
    assert s.arrive(48, 0.0) is Arrival.LATE
    assert s.arrive(48, 0.1) is Arrival.DUPLICATE
    assert s.value == 50


def test_duplicates_above_the_mark_are_dropped() -> None:
    """A resync after the listener reconnected reads ids its notifications also bring."""
    s = Settled(1, hold_s=2.0)
    s.arrive(3, 0.0)
    assert s.arrive(3, 0.1) is Arrival.DUPLICATE
    s.arrive(2, 0.2)
    assert s.arrive(2, 0.3) is Arrival.DUPLICATE
    assert s.value == 3


def test_the_memory_of_arrivals_is_bounded() -> None:
    s = Settled(0, hold_s=2.0, recent_keep=3)
    for i in range(1, 6):
        s.arrive(i, 0.0)
    assert s.arrive(5, 0.0) is Arrival.DUPLICATE
    assert s.arrive(1, 0.0) is Arrival.LATE  # forgotten: only a resync resends, and it reads above the mark
