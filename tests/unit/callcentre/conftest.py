"""Unit tests of the call centre's pure cores: the alarm lifecycle rules, the service-level shares,
the escalation chains, self-clearing, storms, and the welfare visits' risk tiers and cadence. Tables of
cases over plain data and a fixed ``now``; no session, no clock (the ``pure`` guard refuses any
connection)."""

from __future__ import annotations

from tests.support import pure as guard

pure = guard.pure
