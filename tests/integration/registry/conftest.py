"""The registry's API tests: the real app over an in-process client, acting as accounts the factories
make (``make``, from ``tests/integration/conftest.py``) on the elders, guardians, providers and
caregivers a test makes for itself. The reference geography is shared; only the figures tests read
the demo data on purpose (they check area counts against the database).

The client presents no IP address, so the per-address sign-in limit never applies to these tests.
"""

from __future__ import annotations

from tests.support import registry

client = registry.client
