"""Unit tests of the demo's pure parts: the broker configuration generated from
``deploy/mosquitto`` and the demo's data tables. They read files of the repository and start no
service (the ``pure`` guard refuses any network connection)."""

from __future__ import annotations

from tests.support import pure as guard

pure = guard.pure
