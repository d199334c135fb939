"""Unit tests of the web package's pure parts: the catalogues, the vendored files, locale choice.
No database, no server (the ``pure`` guard refuses any network connection)."""

from __future__ import annotations

from tests.support import pure as guard

pure = guard.pure
