"""Unit tests of the registry's pure rules: the GB/T 42195 assessment, resident ID numbers, phone
numbers, and the scope rules with their SQL twins (compiled, not run). Plain principals and values;
no database (the ``pure`` guard refuses any network connection)."""

from __future__ import annotations

from tests.support import pure as guard

pure = guard.pure
