"""Unit tests of the kernel's pure parts: the route rules, distances, the sign-in throttling rules,
password hashing and the constrained wire types. They need plain values and a fixed instant, never
a database (the ``pure`` guard refuses any network connection)."""

from __future__ import annotations

from tests.support import pure as guard

pure = guard.pure
