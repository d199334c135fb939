"""Unit tests of the ingest's pure parts: the normalisation of device messages, the alarm rules and
the SQL the queries build (compiled, not run). Plain payloads and a fixed ``now``; no broker and no
database (the ``pure`` guard refuses any network connection)."""

from __future__ import annotations

from tests.support import pure as guard

pure = guard.pure
