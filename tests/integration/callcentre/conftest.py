"""The call-centre tests: the console's use cases through the API (in the test's rolled-back
transaction) and, for the races, on committed rows over separate connections."""

from __future__ import annotations

from tests.support import registry

client = registry.client
