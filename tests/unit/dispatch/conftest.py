"""Unit tests of dispatch's pure cores: matching, routing, recurrence, the order state machine, visit
verification, contracts and policies. Tables of cases over plain data (frozen dataclasses, Structs)
and a fixed ``now``; no session, no clock (the ``pure`` guard refuses any network connection)."""

from __future__ import annotations

from tests.support import pure as guard

pure = guard.pure
