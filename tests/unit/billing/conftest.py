"""Unit tests of billing's pure cores: the payer waterfall (:mod:`billing.rules`), eligibility
(:mod:`billing.eligibility`), allowance rosters and the table writer. Tables of hand-computed cases and
Hypothesis properties over plain data; no session, no clock (the ``pure`` guard refuses any network
connection)."""

from __future__ import annotations

from tests.support import pure as guard

pure = guard.pure
