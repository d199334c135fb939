"""Unit tests of the call centre's pure cores: the alarm lifecycle rules and the service-level shares.
Tables of cases over plain data; no session, no clock (the ``pure`` guard refuses any connection)."""

from __future__ import annotations

from tests.support import pure as guard

pure = guard.pure
