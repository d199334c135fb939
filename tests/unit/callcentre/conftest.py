"""Unit tests of the call centre's pure cores (escalation chains, self-clearing, storms): tables of
cases over plain data and a fixed ``now``; no session, no clock (the ``pure`` guard refuses any network
connection)."""

from __future__ import annotations

from tests.support import pure as guard

pure = guard.pure
